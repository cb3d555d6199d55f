package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sipp 3.6.1 parses status codes of <recv response="..."> and of sent
// responses when it loads a scenario, so they cannot come from -key/-set.
// These helpers write variants of the shipped scenarios instead.

// ExpectScenario returns the path of a UAC scenario that sends an INVITE
// and requires final response code (then ACKs it). For codes shipped in
// test/sipp (403, 404, 480, 486 as uac_busy.xml, 488, 500, 503) it is that
// file; otherwise a variant of uac_expect_503.xml written to a temp dir.
func ExpectScenario(t testing.TB, code int) string {
	t.Helper()
	if code < 300 || code > 699 {
		t.Fatalf("harness: ExpectScenario: %d is not a final error code", code)
	}
	name := fmt.Sprintf("uac_expect_%d.xml", code)
	if code == 486 {
		name = "uac_busy.xml"
	}
	if p := ScenarioPath(name); fileExists(p) {
		return p
	}
	src := readScenario(t, "uac_expect_503.xml")
	out := strings.ReplaceAll(src, `<recv response="503"`, fmt.Sprintf(`<recv response="%d"`, code))
	out = strings.ReplaceAll(out, "uac_expect_503", fmt.Sprintf("uac_expect_%d", code))
	out = strings.ReplaceAll(out, "with 503", fmt.Sprintf("with %d", code))
	out = strings.ReplaceAll(out, "final 503", fmt.Sprintf("final %d", code))
	return writeScenario(t, name, out)
}

// RejectScenario returns the path of a variant of uas_reject.xml that
// answers every INVITE with "<code> <reason>" (after 100 Trying) and
// requires the ACK.
func RejectScenario(t testing.TB, code int, reason string) string {
	t.Helper()
	if code < 300 || code > 699 || strings.ContainsAny(reason, "\r\n") {
		t.Fatalf("harness: RejectScenario: bad status %d %q", code, reason)
	}
	src := readScenario(t, "uas_reject.xml")
	const line = "SIP/2.0 503 Service Unavailable"
	if !strings.Contains(src, line) {
		t.Fatalf("harness: uas_reject.xml has no %q line", line)
	}
	out := strings.ReplaceAll(src, line, fmt.Sprintf("SIP/2.0 %d %s", code, reason))
	return writeScenario(t, fmt.Sprintf("uas_reject_%d.xml", code), out)
}

func readScenario(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(ScenarioPath(name))
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return string(b)
}

func writeScenario(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	return p
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
