// Command edge-sbc is a SIP-over-TLS session border controller for Webex
// business-to-business calls.
//
//	edge-sbc run [--config FILE] [--state-dir DIR]
//	edge-sbc validate --config FILE
//	edge-sbc check --config FILE [--json]
//	edge-sbc devcert --out DIR --name FQDN [--name FQDN ...] [--ip IP ...]
//	edge-sbc calls [--json] [--metrics ADDR | --config FILE]
//	edge-sbc call --config FILE --trunk NAME sips:user@host [--duration 10s] [--json]
//	edge-sbc version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], stderr)
	case "validate":
		err = cmdValidate(args[1:], stdout)
	case "devcert":
		err = cmdDevcert(args[1:], stdout)
	case "check":
		err = cmdCheck(args[1:], stdout)
	case "calls":
		err = cmdCalls(args[1:], stdout)
	case "call":
		err = cmdCall(args[1:], stdout)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "edge-sbc %s\n", version)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "edge-sbc: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "edge-sbc: %v\n", err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  edge-sbc run [--config FILE] [--state-dir DIR]   run the SBC (embedded loopback default without --config)
  edge-sbc validate --config FILE                  check a configuration file
  edge-sbc check --config FILE [--json] [--timeout 5s]
                                                   Webex readiness: DNS, certificate, ports, trunks,
                                                   live trunk health of the running SBC (its /metrics)
  edge-sbc devcert --out DIR --name FQDN [...]     write a development CA and certificates
  edge-sbc calls [--json] [--metrics ADDR | --config FILE]
                                                   calls in progress of the running SBC (its /calls)
  edge-sbc call --config FILE --trunk NAME sips:user@host [--duration 10s] [--json]
                                                   test call to a trunk: setup, SRTP media both ways, MOS
  edge-sbc version                                 print the version
`)
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func cmdValidate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("validate: --config FILE is required")
	}
	if _, err := loadConfig(*path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return nil
}

func cmdDevcert(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("devcert", flag.ContinueOnError)
	out := fs.String("out", "", "directory to write into")
	var names, ips stringList
	fs.Var(&names, "name", "host name of a leaf certificate (repeatable)")
	fs.Var(&ips, "ip", "IP address added to every leaf's SAN (repeatable; default 127.0.0.1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || len(names) == 0 {
		return errors.New("devcert: --out DIR and at least one --name FQDN are required")
	}
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	if len(ips) > 0 {
		addrs = addrs[:0]
		for _, s := range ips {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("devcert: --ip %q: %w", s, err)
			}
			addrs = append(addrs, a)
		}
	}
	files, err := writeDevPKI(*out, names, addrs)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA:   %s\n", files.CA)
	for _, n := range names {
		lf := files.Leaves[n]
		fmt.Fprintf(stdout, "%s: cert %s key %s\n", n, lf.Cert, lf.Key)
	}
	return nil
}

func cmdRun(args []string, stderr io.Writer) error {
	// First, before anything can take time: from here on SIGHUP, SIGTERM
	// and SIGINT are queued, not fatal.
	sigs, stopSignals := subscribeSignals()
	defer stopSignals()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default: the embedded loopback configuration)")
	stateDir := fs.String("state-dir", "", "where the embedded default keeps its certificates (default $STATE_DIRECTORY, $XDG_STATE_HOME/edge-sbc or ~/.local/state/edge-sbc)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	setGCPercent(os.Getenv("GOGC"))
	return serve(sigs, *path, *stateDir, stderr)
}

// defaultGCPercent is the garbage collector's target the service runs with
// unless GOGC is set: the heap may grow to five times what is live before
// a collection. Go's default (100) spent about a tenth of the CPU on
// collections at 2,000 calls/s (make bench, section 1), 400 about 2 %,
// for some 60 MB more resident memory at that rate.
const defaultGCPercent = 400

// setGCPercent applies defaultGCPercent unless the environment chose
// (GOGC, which the Go runtime has applied already).
func setGCPercent(env string) {
	if env == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}
