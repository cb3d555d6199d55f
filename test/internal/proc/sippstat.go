package proc

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// errNoStats: the statistics file has no row (sipp wrote only the header,
// or nothing yet).
var errNoStats = errors.New("no statistics row")

// SippStats are the cumulative call counters of a sipp run, from the last
// row of its -trace_stat file.
type SippStats struct {
	// Created is TotalCallCreated; -1 when the file has no such column.
	Created int
	// Successful and Failed are SuccessfulCall(C) and FailedCall(C).
	Successful, Failed int
}

// ParseSippStats reads the last row of a sipp -trace_stat file (CSV
// separated by ';', header first): SuccessfulCall(C) and FailedCall(C)
// must be there, TotalCallCreated may.
func ParseSippStats(csv string) (SippStats, error) {
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	if len(lines) < 2 {
		return SippStats{}, errNoStats
	}
	head := strings.Split(lines[0], ";")
	row := strings.Split(lines[len(lines)-1], ";")
	get := func(name string) (int, error) {
		i := slices.Index(head, name)
		if i < 0 || i >= len(row) {
			return 0, fmt.Errorf("no column %s", name)
		}
		n, err := strconv.Atoi(strings.TrimSpace(row[i]))
		if err != nil {
			return 0, fmt.Errorf("column %s: %w", name, err)
		}
		return n, nil
	}
	var (
		s   SippStats
		err error
	)
	if s.Successful, err = get("SuccessfulCall(C)"); err != nil {
		return SippStats{}, err
	}
	if s.Failed, err = get("FailedCall(C)"); err != nil {
		return SippStats{}, err
	}
	if s.Created, err = get("TotalCallCreated"); err != nil {
		s.Created = -1
	}
	return s, nil
}

// ReadSippStats is ParseSippStats of the file at path.
func ReadSippStats(path string) (SippStats, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SippStats{}, fmt.Errorf("sipp statistics: %w", err)
	}
	s, err := ParseSippStats(string(b))
	if err != nil {
		return SippStats{}, fmt.Errorf("sipp statistics %s: %w", path, err)
	}
	return s, nil
}
