package interop

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/syncbuf"
)

// BaresipInstallHint is the fatal message when baresip is missing.
const BaresipInstallHint = "baresip not found in PATH; install with: apt-get install -y baresip-core (Debian; the test uses its g711, srtp, aufile, aubridge and sndfile modules)"

// BaresipModules is where Debian's baresip-core installs its modules.
const BaresipModules = "/usr/lib/baresip/modules"

// BaresipOptions configure a headless baresip that answers calls.
type BaresipOptions struct {
	// User is the user part calls are addressed to ("callee").
	User string
	// Cert (leaf first, then chain) and Key: the TLS server certificate.
	// CA: the roots baresip trusts.
	Cert, Key, CA string
	// Source is a 16-bit mono WAV at 8000 Hz played as the microphone.
	Source string
	// RTPPorts is baresip's RTP port range, "first-last".
	RTPPorts string
	// MaxLife bounds the process (baresip -t), a safety net.
	MaxLife time.Duration
}

// Baresip is a running baresip process.
type Baresip struct {
	// Dir is its configuration directory (config, accounts).
	Dir string
	// RecDir is where the sndfile module writes dump-<time>-{enc,dec}.wav.
	RecDir string
	// SIPPort is the port of sip_listen (UDP and TCP); TLSPort (= SIPPort+1,
	// as baresip 1.0 does) is the SIP over TLS port.
	SIPPort, TLSPort int

	cmd  *exec.Cmd
	out  syncbuf.Buffer
	done chan struct{}
	err  error
}

func (b *Baresip) Write(p []byte) (int, error) { return b.out.Write(p) }

// Output returns what baresip printed so far (its log and, with the SIP
// trace on, every SIP message it sent and received).
func (b *Baresip) Output() string { return b.out.String() }

// WaitOutput waits until the output contains substr.
func (b *Baresip) WaitOutput(substr string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(b.Output(), substr) {
			return true
		}
		select {
		case <-b.done:
			return strings.Contains(b.Output(), substr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

// Config is the baresip 1.0 configuration file written by StartBaresip.
func (o BaresipOptions) Config(dir string, sipPort int) string {
	return fmt.Sprintf(`# baresip 1.0 headless callee of the edge-sbc interop test.
poll_method		epoll
net_interface		127.0.0.1
sip_listen		127.0.0.1:%[1]d
sip_certificate		%[2]s
sip_cafile		%[3]s
sip_trans_def		tls
call_local_timeout	60
call_max_calls		1
audio_source		aufile,%[4]s
audio_player		aubridge,interop
audio_alert		aubridge,interop
ausrc_srate		8000
auplay_srate		8000
ausrc_channels		1
auplay_channels		1
audio_buffer		20-160
rtp_tos			184
rtp_ports		%[5]s
rtcp_mux		yes
jitter_buffer_delay	1-10
rtp_stats		no
module_path		%[6]s
module			g711.so
module			aufile.so
module			aubridge.so
module			sndfile.so
module			srtp.so
module_tmp		account.so
snd_path		%[7]s
`, sipPort, filepath.Join(dir, "cert.pem"), o.CA, o.Source, o.RTPPorts, BaresipModules, filepath.Join(dir, "rec"))
}

// Accounts is the accounts file: one local account (no registration) that
// answers at once, with SDES-SRTP mandatory and PCMU only.
func (o BaresipOptions) Accounts() string {
	return fmt.Sprintf("<sips:%s@127.0.0.1;transport=tls>;regint=0;answermode=auto;mediaenc=srtp-mand;audio_codecs=PCMU\n", o.User)
}

// freeSIPPorts returns p such that TCP p, UDP p and TCP p+1 are free on
// 127.0.0.1 (baresip listens on all three).
func freeSIPPorts() (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		ok := p < 65535
		if ok {
			ok = probe(p)
		}
		_ = l.Close()
		if ok {
			return p, nil
		}
	}
	return 0, errors.New("no free SIP port pair on 127.0.0.1")
}

// probe reports whether UDP p and TCP p+1 can be bound on 127.0.0.1.
func probe(p int) bool {
	u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	defer u.Close()
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
	if err != nil {
		return false
	}
	return l.Close() == nil
}

// StartBaresip writes a configuration into a temp dir and starts
// `baresip -f <dir> -s` (SIP trace on); it returns once baresip is ready.
// The process is stopped at cleanup (SIGTERM, then SIGKILL); its output is
// logged when the test failed.
func StartBaresip(t testing.TB, o BaresipOptions) *Baresip {
	t.Helper()
	bin, err := exec.LookPath("baresip")
	if err != nil {
		t.Fatal(BaresipInstallHint)
	}
	if _, err := os.Stat(filepath.Join(BaresipModules, "srtp.so")); err != nil {
		t.Fatalf("baresip modules missing (%v); %s", err, BaresipInstallHint)
	}
	dir := t.TempDir()
	b := &Baresip{Dir: dir, RecDir: filepath.Join(dir, "rec"), done: make(chan struct{})}
	if err := os.Mkdir(b.RecDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cert, err := os.ReadFile(o.Cert)
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(o.Key)
	if err != nil {
		t.Fatal(err)
	}
	// libre's TLS reads the certificate chain and the key from one file.
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), append(append(cert, '\n'), key...), 0o600); err != nil {
		t.Fatal(err)
	}
	if b.SIPPort, err = freeSIPPorts(); err != nil {
		t.Fatal(err)
	}
	b.TLSPort = b.SIPPort + 1
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(o.Config(dir, b.SIPPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(o.Accounts()), 0o600); err != nil {
		t.Fatal(err)
	}
	life := o.MaxLife
	if life <= 0 {
		life = time.Minute
	}
	b.cmd = exec.Command(bin, "-f", dir, "-s", "-t", strconv.Itoa(int(life/time.Second)))
	b.cmd.Dir = dir
	b.cmd.Stdout = b
	b.cmd.Stderr = b
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start baresip: %v", err)
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("baresip output:\n%s", b.Output())
		}
	})
	if !b.WaitOutput("baresip is ready.", 10*time.Second) {
		t.Fatalf("baresip not ready (exit: %v):\n%s", b.exitErr(), b.Output())
	}
	return b
}

func (b *Baresip) exitErr() error {
	select {
	case <-b.done:
		return b.err
	default:
		return nil
	}
}

// Stop ends baresip: SIGTERM to its process group, SIGKILL after 3 s.
// It is idempotent.
func (b *Baresip) Stop() {
	select {
	case <-b.done:
		return
	default:
	}
	pid := b.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-b.done
	}
}

// Recording returns the path of the newest sndfile dump whose name ends in
// "-<kind>.wav" (kind "dec": what baresip heard; "enc": what it sent).
func (b *Baresip) Recording(kind string) (string, error) {
	m, err := filepath.Glob(filepath.Join(b.RecDir, "dump-*-"+kind+".wav"))
	if err != nil {
		return "", err
	}
	if len(m) == 0 {
		return "", fmt.Errorf("no %s recording in %s", kind, b.RecDir)
	}
	return m[len(m)-1], nil
}

// SDPCrypto returns the a=crypto values of the SDP bodies in the SIP trace
// lines of baresip's output, in order, split by direction: sent is what
// baresip put in its own SDP, received what it got.
func (b *Baresip) SDPCrypto() (sent, received []string) {
	// The trace prints "<TRANSPORT> <src> -> <dst>" before each message;
	// baresip's own address is its TLS port.
	self := fmt.Sprintf("127.0.0.1:%d", b.TLSPort)
	dirSent := false
	for _, line := range strings.Split(b.Output(), "\n") {
		line = strings.TrimRight(line, "\r")
		if f := strings.Fields(line); len(f) == 4 && f[2] == "->" {
			dirSent = f[1] == self
			continue
		}
		if v, ok := strings.CutPrefix(line, "a=crypto:"); ok {
			if dirSent {
				sent = append(sent, v)
			} else {
				received = append(received, v)
			}
		}
	}
	return sent, received
}
