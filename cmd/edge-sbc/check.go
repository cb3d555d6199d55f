package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/edge-sbc/edge-sbc/cmd/edge-sbc/readiness"
	"github.com/edge-sbc/edge-sbc/config"
)

// errCheckFailed is returned by cmdCheck when a "must" check failed.
var errCheckFailed = errors.New("check: a required check failed")

// cmdCheck runs the Webex readiness checks of a configuration and prints
// them as a table (or JSON with --json); with trunk health monitoring on,
// they include each target's live state read from the running service's
// metrics listener (readiness checkHealth). It returns an error, so that the
// command exits 1, when a "must" check failed or the configuration cannot
// be loaded.
//
//	edge-sbc check --config FILE [--json] [--timeout 5s]
func cmdCheck(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file")
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	timeout := fs.Duration("timeout", readiness.DefaultTimeout, "bound of each network step (DNS query, connect, TLS handshake, OPTIONS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("check: --config FILE is required")
	}
	if *timeout <= 0 {
		return fmt.Errorf("check: --timeout %s must be positive", *timeout)
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	ctx, stop := signalContext(context.Background())
	defer stop()
	results := readiness.Run(ctx, cfg, readiness.Options{Timeout: *timeout, Now: time.Now})
	if *asJSON {
		err = readiness.WriteJSON(stdout, results)
	} else {
		err = readiness.WriteTable(stdout, results)
	}
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if readiness.Failed(results) {
		return errCheckFailed
	}
	return nil
}
