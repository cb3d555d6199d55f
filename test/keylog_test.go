package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// capture runs `tshark -i lo -f FILTER -w FILE` until stop is called.
type capture struct {
	cmd    *exec.Cmd
	file   string
	stderr *bytes.Buffer
	done   chan struct{}
}

// startCapture starts tshark on the loopback interface; it skips the test
// when tshark is missing or may not capture on lo.
func startCapture(t *testing.T, filter string) *capture {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark is not installed (apt-get install -y tshark, as make test-deps does)")
	}
	c := &capture{file: filepath.Join(t.TempDir(), "sip.pcapng"), stderr: &bytes.Buffer{}, done: make(chan struct{})}
	c.cmd = exec.Command("tshark", "-i", "lo", "-f", filter, "-w", c.file)
	pr, pw := io.Pipe()
	c.cmd.Stderr = pw
	if err := c.cmd.Start(); err != nil {
		t.Skipf("tshark cannot start: %v", err)
	}
	started := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			c.stderr.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Capturing on") {
				select {
				case started <- true:
				default:
				}
			}
		}
	}()
	go func() {
		_ = c.cmd.Wait()
		_ = pw.Close()
		close(c.done)
	}()
	t.Cleanup(c.stop)
	select {
	case <-started:
	case <-c.done:
		t.Skipf("tshark may not capture on lo here: %s", c.stderr.String())
	case <-time.After(15 * time.Second):
		t.Skipf("tshark did not start capturing on lo within 15s: %s", c.stderr.String())
	}
	time.Sleep(300 * time.Millisecond) // the capture filter is in place
	return c
}

func (c *capture) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// TestTLSKeyLogDecryptsCapture: with tls.keylog_file set, the SBC warns
// at start, writes the NSS key log (0600) for its connections in both
// directions, and tshark decrypts a loopback capture of a call with it:
// the INVITE shows on the caller's leg (the SBC is TLS server) and on the
// callee's leg (the SBC is TLS client). Without the key log tshark sees no
// SIP at all.
func TestTLSKeyLogDecryptsCapture(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	keys := filepath.Join(t.TempDir(), "sslkeys.log")
	b := newTraceBed(t, traceOpts{tls: "  keylog_file: " + keys})
	warning := fmt.Sprintf("TLS key log is on: anyone who reads %s can decrypt every call's signalling", keys)
	if !strings.Contains(b.sbc.Logs(), warning) {
		t.Fatalf("no start-up warning %q", warning)
	}
	c := startCapture(t, fmt.Sprintf("tcp port %d or tcp port %d", b.mtlsPort, b.calleeTL))
	b.call(t)
	time.Sleep(300 * time.Millisecond)
	c.stop()

	fi, err := os.Stat(keys)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key log mode %v, want 0600", fi.Mode().Perm())
	}
	kl, _ := os.ReadFile(keys)
	if !bytes.Contains(kl, []byte("CLIENT_TRAFFIC_SECRET_0 ")) && !bytes.Contains(kl, []byte("CLIENT_RANDOM ")) {
		t.Fatalf("no NSS key log lines in %s:\n%s", keys, kl)
	}

	decode := func(withKeys bool) string {
		// TLS on both ports, SIP inside (tshark 4.0 has no SIP heuristic
		// on TLS: its sip.tls.port preference takes one port).
		args := []string{"-r", c.file,
			"-d", fmt.Sprintf("tcp.port==%d,tls", b.mtlsPort), "-d", fmt.Sprintf("tcp.port==%d,tls", b.calleeTL),
			"-d", fmt.Sprintf("tls.port==%d,sip", b.mtlsPort), "-d", fmt.Sprintf("tls.port==%d,sip", b.calleeTL),
			"-Y", "sip", "-T", "fields", "-E", "separator=/s", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "sip.Method", "-e", "sip.Status-Code"}
		if withKeys {
			args = append([]string{"-o", "tls.keylog_file:" + keys}, args...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "tshark", args...).Output()
		if err != nil {
			t.Fatalf("tshark -r: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := strings.TrimSpace(decode(false)); out != "" {
		t.Fatalf("tshark decoded SIP without the key log:\n%s", out)
	}
	out := decode(true)
	inviteTo := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "INVITE" {
			inviteTo[f[1]] = true
			t.Logf("tshark (decrypted): %s", line)
		}
	}
	for _, port := range []int{b.mtlsPort, b.calleeTL} {
		if !inviteTo[fmt.Sprint(port)] {
			t.Errorf("no decrypted INVITE to port %d (caller leg %d, callee leg %d) in:\n%s", port, b.mtlsPort, b.calleeTL, out)
		}
	}
	t.Logf("tshark -o tls.keylog_file:%s -Y sip:\n%s", keys, out)
}
