package main

import (
	"fmt"
	"io"
	"math"
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
	if len(rep.notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range rep.notes {
			fmt.Fprintln(w, " - "+n)
		}
	}
}

var sectionTitle = map[int]string{
	1: "call rate over mutual TLS (sipp -> socat -> edge-sbc -> socat -> sipp)",
	2: "concurrent calls (held calls with media anchored)",
	3: "media relay, passthrough (in process) vs bare recvmmsg/sendmmsg forwarder",
	4: "media relay, SRTP terminated on both legs",
	5: "go test -bench (hot paths)",
}
