package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// runGoBench runs go test -bench on the hot-path packages and reports
// ns/op, B/op and allocs/op of every benchmark.
func runGoBench(ctx context.Context, e *env, rep *report) error {
	bt := "1s"
	if e.o.quick {
		bt = "100ms"
	}
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", bt, "-count", "1", "./media", "./dnsresolve"}
	logf("  go %s", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = e.root
	out, err := cmd.CombinedOutput()
	pkg := ""
	n := 0
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "pkg: ") {
			pkg = strings.TrimPrefix(line, "pkg: github.com/edge-sbc/edge-sbc/")
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // GOMAXPROCS suffix
			}
		}
		vals := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				vals[f[i+1]] = v
			}
		}
		note := fmt.Sprintf("%.0f B/op, %.0f allocs/op", vals["B/op"], vals["allocs/op"])
		if mb, ok := vals["MB/s"]; ok {
			note += fmt.Sprintf(", %.1f MB/s", mb)
		}
		rep.add(Result{Section: 5, Name: pkg + "." + name, Value: vals["ns/op"], Unit: "ns/op", Note: note})
		rep.add(Result{Section: 5, Name: pkg + "." + name + " B/op", Value: vals["B/op"], Unit: "B/op", Hidden: true})
		rep.add(Result{Section: 5, Name: pkg + "." + name + " allocs/op", Value: vals["allocs/op"], Unit: "allocs/op", Hidden: true})
		n++
	}
	if err != nil {
		return fmt.Errorf("go test -bench: %v\n%s", err, tailStr(string(out), 3000))
	}
	if n == 0 {
		return fmt.Errorf("no benchmark lines in:\n%s", tailStr(string(out), 3000))
	}
	return nil
}

func tailStr(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
