package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// fmtVal formats a figure with 3 significant digits (integers above 1000
// as integers).
func fmtVal(v float64) string {
	switch a := math.Abs(v); {
	case v == 0:
		return "0"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 10:
		return fmt.Sprintf("%.2f", v)
	case a >= 0.01:
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

func printTable(w io.Writer, mi map[string]string, rep *report) {
	fmt.Fprintf(w, "\nedge-sbc benchmarks — %s, %s cores, %s, %s, kernel %s\n",
		mi["cpu"], mi["cores"], mi["go"], mi["os"], mi["kernel"])
	fmt.Fprintf(w, "%-46s %14s %-10s %14s %-16s %7s  %s\n", "metric", "edge-sbc", "unit", "baseline", "(baseline)", "ratio", "note")
	fmt.Fprintln(w, strings.Repeat("-", 130))
	sec := -1
	for _, r := range rep.results {
		if r.Hidden {
			continue
		}
		if r.Section != sec {
			sec = r.Section
			fmt.Fprintf(w, "[%d] %s\n", sec, sectionTitle[sec])
		}
		val, base, ratio := fmtVal(r.Value), "", ""
		if r.NA {
			val = "n/a"
		}
		if r.Baseline != 0 {
			base = fmtVal(r.Baseline)
			if !r.NA {
				ratio = fmt.Sprintf("%.2f", r.Value/r.Baseline)
			}
		}
		fmt.Fprintf(w, "%-46s %14s %-10s %14s %-16s %7s  %s\n", r.Name, val, r.Unit, base, r.BaseName, ratio, r.Note)
	}
	if rep.callRate != nil {
		printRateSteps(w, rep.callRate)
	}
	if len(rep.notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range rep.notes {
			fmt.Fprintln(w, " - "+n)
		}
	}
}

var sectionTitle = map[int]string{
	1: "call rate over mutual TLS, edge-sbc next to Kamailio (caller -> system -> callee, same run)",
	2: "concurrent calls (held calls with media anchored)",
	3: "media relay, passthrough (in process) vs bare recvmmsg/sendmmsg forwarder",
	4: "media relay, SRTP terminated on both legs",
	5: "go test -bench (hot paths)",
	6: "media relay with the kernel fast path (eBPF) vs userspace, in network namespaces (system-wide CPU)",
}

// printRateSteps prints section 1 step by step: each system at each offered
// rate, and the ratios edge-sbc / Kamailio.
func printRateSteps(w io.Writer, cr *CallRate) {
	base := cr.Baseline
	fmt.Fprintf(w, "\n[1] per step (%s, %gs steps; cpu = ms of CPU per successful call; rss = MiB at the end of the step; ratio = edge-sbc / %s)\n", cr.Tool, cr.StepS, base)
	fmt.Fprintf(w, "%8s | %-41s | %-41s | %-20s | %s\n", "", "edge-sbc", base, "ratio", "other users")
	fmt.Fprintf(w, "%8s | %9s %7s %7s %7s %7s | %9s %7s %7s %7s %7s | %6s %6s %6s | %s\n", "offered",
		"achieved", "failed", "cpu", "cpu%", "rss", "achieved", "failed", "cpu", "cpu%", "rss", "cps", "cpu", "rss", "cpu% (edge-sbc / Kamailio step)")
	fmt.Fprintln(w, strings.Repeat("-", 130))
	var rates []int
	by := map[string]map[int]*RateStep{"edge-sbc": {}, "kamailio": {}}
	retried := map[int]bool{}
	for _, st := range cr.Steps {
		if !slices.Contains(rates, st.Offered) {
			rates = append(rates, st.Offered)
		}
		if st.Retried {
			retried[st.Offered] = true
			continue
		}
		by[st.System][st.Offered] = st
	}
	cell := func(st *RateStep) string {
		if st == nil {
			return fmt.Sprintf("%9s %7s %7s %7s %7s", "-", "", "", "", "")
		}
		return fmt.Sprintf("%9.0f %7d %7.3f %6.0f%% %7.1f", st.Achieved, st.Failed, st.CPUms, st.CPUPct, st.RSSMiB)
	}
	ratio := func(a, b float64) string {
		if a == 0 || b == 0 {
			return ""
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	for _, r := range rates {
		s, k := by["edge-sbc"][r], by["kamailio"][r]
		var rc, rcpu, rrss string
		// Ratios only where neither system failed a call: a failed step's
		// CPU per successful call and achieved rate compare nothing.
		if s != nil && k != nil && !s.failed() && !k.failed() {
			rc, rcpu, rrss = ratio(s.Achieved, k.Achieved), ratio(s.CPUms, k.CPUms), ratio(s.RSSMiB, k.RSSMiB)
		}
		other := func(st *RateStep) string {
			if st == nil {
				return "-"
			}
			return fmt.Sprintf("%.0f%%", st.OtherPct)
		}
		fmt.Fprintf(w, "%7d%s | %s | %s | %6s %6s %6s | %s / %s\n", r, ifs(retried[r], "*", " "), cell(s), cell(k), rc, rcpu, rrss, other(s), other(k))
	}
	for _, st := range cr.Steps {
		switch {
		case st.Behind:
			fmt.Fprintf(w, "%8d   %s not sustained, 0 failed (the ramp goes on): %s\n", st.Offered, st.System, st.Why)
		case !st.Sustained:
			fmt.Fprintf(w, "%8d   %s failed%s: %s\n", st.Offered, st.System, ifs(st.Retried, " (run again)", ""), st.Why)
		}
	}
	if rr := cr.RSSRun; rr != nil {
		var marks []string
		for _, m := range rr.Marks {
			marks = append(marks, fmt.Sprintf("%.1f MiB at %.0f s", m.RSSMiB, m.AtS))
		}
		fmt.Fprintf(w, "edge-sbc RSS at %d calls/s for %.0f s: %s (%s)\n", rr.Rate, rr.DurS, strings.Join(marks, ", "),
			ifs(rr.Why != "", rr.Why, fmt.Sprintf("%d/%d successful", rr.Successful, rr.Successful+rr.Failed)))
	}
}
