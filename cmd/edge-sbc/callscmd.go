package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edge-sbc/edge-sbc/config"
)

// cmdCalls prints the calls in progress of a running SBC, read from its
// metrics listener's /calls.
//
//	edge-sbc calls [--json] [--metrics ADDR | --config FILE] [--timeout 5s]
func cmdCalls(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("calls", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the SBC's /calls JSON as it is")
	addr := fs.String("metrics", "", "the running SBC's metrics listener, ip:port")
	path := fs.String("config", "", "read the metrics listener's address from this configuration (metrics.listen)")
	timeout := fs.Duration("timeout", 5*time.Second, "bound of the HTTP request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	target, err := metricsTarget(*addr, *path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	body, err := fetchCalls(ctx, target)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(body)
		if err != nil {
			return fmt.Errorf("calls: %w", err)
		}
		return nil
	}
	var r callsReply
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("calls: %s/calls: %w", target, err)
	}
	return writeCallsTable(stdout, r)
}

// metricsTarget returns host:port to reach the metrics listener: --metrics
// as given, else the configuration's metrics.listen (an unspecified
// address is reached on loopback).
func metricsTarget(addr, path string) (string, error) {
	if addr != "" && path != "" {
		return "", errors.New("calls: give --metrics ADDR or --config FILE, not both")
	}
	if addr == "" {
		if path == "" {
			return "", errors.New("calls: --metrics ADDR or --config FILE is required")
		}
		cfg, err := config.Load(path)
		if err != nil {
			return "", fmt.Errorf("calls: %w", err)
		}
		if cfg.Metrics.Listen == "" {
			return "", fmt.Errorf("calls: %s has no metrics.listen: the SBC serves /calls there only", path)
		}
		addr = cfg.Metrics.Listen
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		if _, _, err2 := net.SplitHostPort(addr); err2 != nil {
			return "", fmt.Errorf("calls: metrics address %q: %w", addr, err)
		}
		return addr, nil
	}
	if ap.Addr().IsUnspecified() {
		lo := netip.MustParseAddr("127.0.0.1")
		if ap.Addr().Is6() {
			lo = netip.IPv6Loopback()
		}
		ap = netip.AddrPortFrom(lo, ap.Port())
	}
	return ap.String(), nil
}

// fetchCalls GETs http://target/calls.
func fetchCalls(ctx context.Context, target string) ([]byte, error) {
	url := "http://" + target + "/calls"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("calls: %w", err)
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer c.CloseIdleConnections()
	res, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calls: is the SBC running with metrics.listen %s? %w", target, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("calls: %s: %w", url, err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("calls: %s: %s", url, res.Status)
	}
	return body, nil
}

// writeCallsTable prints one line per call, then one per stream direction.
func writeCallsTable(w io.Writer, r callsReply) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CALL\tTRUNKS\tSTATE\tDURATION\tSTREAM\tCODEC\tDIR\tFROM\tPACKETS\tLOSS%\tJITTER_MS\tMOS\tFLAGS")
	degraded := 0
	for _, c := range r.Calls {
		if c.Degraded {
			degraded++
		}
		head := fmt.Sprintf("%s\t%s → %s\t%s\t%s", c.Call, c.TrunkA, dash(c.TrunkB), c.State,
			(time.Duration(c.DurationSec*1e3) * time.Millisecond).Round(time.Second))
		if len(c.Streams) == 0 {
			fmt.Fprintf(tw, "%s\t-\t\t\t\t\t\t\t\n", head)
			continue
		}
		first := true
		for _, s := range c.Streams {
			name := fmt.Sprintf("%s#%d", s.Media, s.Index)
			for _, d := range []struct {
				dir, from string
				v         dirView
			}{{"A→B", s.RemoteA, s.FromA}, {"B→A", s.RemoteB, s.FromB}} {
				lead := "\t\t\t"
				if first {
					lead = head
				}
				first = false
				mos := "-"
				if d.v.MOS > 0 {
					mos = fmt.Sprintf("%.2f", d.v.MOS)
				}
				flags := "ok"
				if len(d.v.Degraded) > 0 {
					flags = "DEGRADED: " + strings.Join(d.v.Degraded, ",")
				} else if d.v.Packets == 0 {
					flags = "no media"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%.2f\t%.1f\t%s\t%s\n", lead, name, dash(s.Codec), d.dir, dash(d.from),
					d.v.Packets, d.v.LossPercent, d.v.JitterMs, mos, flags)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("calls: %w", err)
	}
	_, err := fmt.Fprintf(w, "%d call(s), %d degraded (jitter > %g ms, loss > %g %%, MOS < %g; MOS assumes %g ms one-way delay)\n",
		len(r.Calls), degraded, r.Thresholds.JitterMs, r.Thresholds.LossPercent, r.Thresholds.MOS, r.Thresholds.OneWayDelayMs)
	if err != nil {
		return fmt.Errorf("calls: %w", err)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
