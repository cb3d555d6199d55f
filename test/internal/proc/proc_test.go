package proc

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartStopGroup(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sh.log")
	// The shell forks a child that would outlive it: Stop ends both.
	p, err := Start(Options{Path: "sh", Args: []string{"-c", "echo started; sleep 60 & wait"}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitLog("started", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if p.Exited() || p.ExitCode() != -1 || p.Err() != nil || p.Name() != "sh" {
		t.Fatalf("running: exited %v code %d err %v name %q", p.Exited(), p.ExitCode(), p.Err(), p.Name())
	}
	p.Stop(syscall.SIGTERM, 2*time.Second)
	if !p.Exited() || p.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Fatalf("after Stop: exited %v code %d", p.Exited(), p.ExitCode())
	}
	// The killed child is reaped by whoever inherits it: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(-p.Pid(), 0) == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a process of the group survived Stop")
		}
	}
	if !strings.Contains(p.LogTail(100), "started") {
		t.Errorf("log tail %q", p.LogTail(100))
	}
	var nilProc *Proc
	nilProc.Stop(syscall.SIGTERM, time.Second) // no-op
}

func TestExitCode(t *testing.T) {
	p, err := Start(Options{Path: "sh", Args: []string{"-c", "exit 3"}, Name: "three"})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Wait(5 * time.Second) {
		t.Fatal("did not exit")
	}
	if p.ExitCode() != 3 || p.Err() == nil {
		t.Errorf("exit code %d, err %v", p.ExitCode(), p.Err())
	}
	if err := p.WaitLog("never", time.Second); err == nil || !strings.Contains(err.Error(), "three exited") {
		t.Errorf("WaitLog after exit: %v", err)
	}
	if _, err := Start(Options{Path: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("a missing program started")
	}
}

func TestWaitListening(t *testing.T) {
	ln, err := net.Listen("tcp", Loopback+":0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := WaitListening(port, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	_ = ln.Close()
	if err := WaitListening(port, 100*time.Millisecond, nil); err == nil {
		t.Error("a closed port is listening")
	}
	p, err := Start(Options{Path: "true"})
	if err != nil {
		t.Fatal(err)
	}
	p.Wait(5 * time.Second)
	if err := WaitListening(port, 5*time.Second, p); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("exited process: %v", err)
	}
}

func TestParseSippStats(t *testing.T) {
	csv := "StartTime;TotalCallCreated;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C)\n" +
		"2026-01-01\t00:00:00;0;0;0;0;0\n" +
		"2026-01-01\t00:00:01;6;1;3;0;2\n"
	if s, err := ParseSippStats(csv); err != nil || s != (SippStats{Created: 6, Successful: 3, Failed: 2}) {
		t.Errorf("ParseSippStats = %+v, %v", s, err)
	}
	noCreated := "SuccessfulCall(C);FailedCall(C)\n4;1\n"
	if s, err := ParseSippStats(noCreated); err != nil || s != (SippStats{Created: -1, Successful: 4, Failed: 1}) {
		t.Errorf("without TotalCallCreated: %+v, %v", s, err)
	}
	for _, bad := range []string{"", "SuccessfulCall(C);FailedCall(C)\n", "SuccessfulCall(C)\n1\n", "SuccessfulCall(C);FailedCall(C)\n1;x\n"} {
		if _, err := ParseSippStats(bad); err == nil {
			t.Errorf("ParseSippStats(%q) accepted", bad)
		}
	}
	path := filepath.Join(t.TempDir(), "stat.csv")
	if err := os.WriteFile(path, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := ReadSippStats(path); err != nil || s.Successful != 3 {
		t.Errorf("ReadSippStats = %+v, %v", s, err)
	}
	if _, err := ReadSippStats(path + ".missing"); err == nil {
		t.Error("a missing file read")
	}
}
