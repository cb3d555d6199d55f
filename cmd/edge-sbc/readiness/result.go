package readiness

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Levels: how much a requirement matters. A failed "must" check makes the
// whole run fail (see Failed); a "should" check only ever warns.
const (
	LevelMust   = "must"
	LevelShould = "should"
)

// Verdicts of one check.
const (
	VerdictOK   = "ok"
	VerdictWarn = "warn"
	VerdictFail = "fail"
)

// Result is the outcome of one check.
type Result struct {
	// ID names the check, optionally followed by "/" and what it was run
	// on, e.g. "cert.expiry", "dns.ptr/192.0.2.10",
	// "trunk.tls/webex/192.0.2.20:5061". IDs are stable across runs.
	ID string `json:"id"`
	// Requirement is the Webex requirement the check tests, in words.
	Requirement string `json:"requirement"`
	// Level is LevelMust or LevelShould.
	Level string `json:"level"`
	// Verdict is VerdictOK, VerdictWarn or VerdictFail.
	Verdict string `json:"verdict"`
	// Evidence says what was observed, on one line.
	Evidence string `json:"evidence"`
}

// Failed reports whether any "must" check failed.
func Failed(rs []Result) bool {
	return countFailedMust(rs) > 0
}

func countFailedMust(rs []Result) int {
	n := 0
	for _, r := range rs {
		if r.Level == LevelMust && r.Verdict == VerdictFail {
			n++
		}
	}
	return n
}

// WriteTable writes rs as an aligned, human-readable table followed by a
// one-line summary.
func WriteTable(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERDICT\tLEVEL\tCHECK\tREQUIREMENT\tEVIDENCE")
	counts := map[string]int{}
	for _, r := range rs {
		counts[r.Verdict]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", strings.ToUpper(r.Verdict), r.Level, r.ID, oneLine(r.Requirement), oneLine(r.Evidence))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("readiness: write table: %w", err)
	}
	_, err := fmt.Fprintf(w, "\n%d checks: %d ok, %d warn, %d fail (%d must failed)\n",
		len(rs), counts[VerdictOK], counts[VerdictWarn], counts[VerdictFail], countFailedMust(rs))
	if err != nil {
		return fmt.Errorf("readiness: write table: %w", err)
	}
	return nil
}

// WriteJSON writes rs as an indented JSON array of objects with the keys
// id, requirement, level, verdict and evidence.
func WriteJSON(w io.Writer, rs []Result) error {
	if rs == nil {
		rs = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rs); err != nil {
		return fmt.Errorf("readiness: write json: %w", err)
	}
	return nil
}

// oneLine keeps a table row on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// check describes one kind of check: its ID prefix, the requirement it
// tests and its level. Its methods build Results.
type check struct {
	id, requirement, level string
}

// on returns the check applied to a subject: the ID becomes id/subject.
func (c check) on(subject ...string) check {
	if len(subject) > 0 {
		c.id += "/" + strings.Join(subject, "/")
	}
	return c
}

// withLevel returns c with another level.
func (c check) withLevel(level string) check {
	c.level = level
	return c
}

func (c check) result(verdict, format string, args ...any) Result {
	return Result{ID: c.id, Requirement: c.requirement, Level: c.level, Verdict: verdict, Evidence: fmt.Sprintf(format, args...)}
}

// ok is a passed check.
func (c check) ok(format string, args ...any) Result { return c.result(VerdictOK, format, args...) }

// warn is a check that passed with a caveat, or a "should" that failed.
func (c check) warn(format string, args ...any) Result {
	return c.result(VerdictWarn, format, args...)
}

// miss is a requirement not met: fail for a "must", warn for a "should".
func (c check) miss(format string, args ...any) Result {
	v := VerdictFail
	if c.level != LevelMust {
		v = VerdictWarn
	}
	return c.result(v, format, args...)
}
