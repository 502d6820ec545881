package bench

// BenchmarkAnsible: a small playbook (file, copy, command, template) run
// by Debian's ansible-core, a real client nobody here wrote, over 10 hosts
// with forks 10, side by side: plain ssh to sshd (the floor), ssh through
// socat, through ssm-proxy, through ssm-proxy --share 60s --fdpass (one
// shared session per host) and through the official client, each with and
// without ControlPersist. All 10 inventory names reach the one test sshd:
// directly for the floor, through the emulator (10 instances) for the
// others.

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// ansibleHosts is the inventory's size (and forks): 10, 5 in a quick run,
// for ansible-playbook is CPU-hungry and the machine has 2 cores.
func ansibleHosts() int {
	if *flagQuick {
		return 5
	}
	return 10
}

// ansiblePlaybook copies a file, checks it with a command and renders a
// template on every host, each into a directory of its own (all hosts are
// the same machine).
const ansiblePlaybook = `- hosts: all
  gather_facts: false
  tasks:
    - name: a directory per host
      file:
        path: "{{ base }}/{{ inventory_hostname }}"
        state: directory
    - name: copy a file
      copy:
        src: payload.bin
        dest: "{{ base }}/{{ inventory_hostname }}/payload.bin"
    - name: run a command
      command: sha256sum "{{ base }}/{{ inventory_hostname }}/payload.bin"
      register: sum
      changed_when: false
    - name: render a template
      template:
        src: motd.j2
        dest: "{{ base }}/{{ inventory_hostname }}/motd"
`

const ansibleTemplate = "{{ inventory_hostname }} ({{ ansible_host }}) sha256 {{ sum.stdout.split()[0] }}\n"

type ansibleResults struct {
	started time.Time
	load    string
	version string
	runs    int
	paths   []string
	// secs[mode][path]: mode "persist" or "no persist"
	secs map[string]map[string][]float64
	// sessions[mode][path] are the SSM sessions each run of an SSM path
	// started: the ssh connections that paid a session set-up (for
	// ssm-proxy --share, the shared sessions).
	sessions map[string]map[string][]float64
	// busy[mode][path] is the machine's busy CPU seconds during each run
	// (all cores), emu[mode][path] the bench process's own, almost all of
	// it the emulator's: the stand-in for AWS, whose CPU on the real
	// service is not the user's machine's.
	busy, emu map[string]map[string][]float64
	// sharedLogs are the first lines of the shared processes' logs that
	// were not empty.
	sharedLogs []string
	notes      []string
}

// ansibleSocat is the path through socat, the floor of the other
// sections.
const ansibleSocat = "socat, nodelay"

// ansibleShare is ssh's ProxyCommand `ssm-proxy --share 60s --fdpass %h
// %p` with ProxyUseFdpass yes: each host's first connection starts a background ssm-proxy that holds one
// port-forwarding session for it, and the later ones reach it through a
// Unix socket.
const ansibleShare = "ssm-proxy --share"

// shareStopTimeout bounds the wait for the shared processes of a run to
// exit, once told to, and remove their sockets.
const shareStopTimeout = 30 * time.Second

const (
	modeNoPersist = "without ControlPersist"
	modePersist   = "with ControlPersist"
)

// BenchmarkAnsible runs the playbook side by side (use -benchtime 1x; bash
// bench/run.sh --ansible-only).
func BenchmarkAnsible(b *testing.B) {
	if b.N > 1 {
		b.Skip("run with -benchtime 1x")
	}
	r := &ansibleResults{started: time.Now(), load: loadAvg(), secs: map[string]map[string][]float64{}, sessions: map[string]map[string][]float64{}, busy: map[string]map[string][]float64{}, emu: map[string]map[string][]float64{}}
	playbookBin, err := testenv.LookPath("ansible-playbook")
	if err != nil {
		r.notes = append(r.notes, "ansible-playbook is not installed here (Debian package ansible-core; bench/run.sh installs it when run as root), so nothing was measured.")
		r.write(b)
		return
	}
	out, _ := exec.Command(playbookBin, "--version").CombinedOutput()
	r.version, _, _ = strings.Cut(string(out), "\n")
	testenv.Require(b, "ssh", "sshd")
	tl := tools(b)
	r.runs = 3
	if *flagQuick {
		r.runs = 1
	}
	dir := b.TempDir()
	sshd := testenv.StartSSHD(b)
	var instances []ssmtest.Instance
	for i := range ansibleHosts() {
		instances = append(instances, ssmtest.Instance{ID: fmt.Sprintf("i-0a%015x", i+1), Name: fmt.Sprintf("node-%d", i+1)})
	}
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: sshd.Addr, Instances: instances})
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	env := ssmtest.ClientEnv(b, emu.Endpoint())

	// The playbook's files.
	play := filepath.Join(dir, "play")
	if err := os.Mkdir(play, 0o755); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 64<<10)
	rand.Read(payload)
	for name, data := range map[string][]byte{"site.yml": []byte(ansiblePlaybook), "motd.j2": []byte(ansibleTemplate), "payload.bin": payload} {
		if err := os.WriteFile(filepath.Join(play, name), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}

	type apath struct {
		name      string
		sshConfig string
		direct    bool // the floor: ssh straight to sshd
		shared    bool // ssm-proxy --share: sockets of its own per run, its processes ended after each
	}
	// The floor's hosts are names that ssh maps to the one sshd, so that
	// each is a host of its own to ssh (and gets a ControlPersist master
	// of its own), as ten machines would.
	floorClient := sshd.Client(b, "")
	floorConfig := filepath.Join(dir, "floor_ssh_config")
	if err := os.WriteFile(floorConfig, []byte(fmt.Sprintf("Host node-*\n  HostName 127.0.0.1\n  Port %d\nHost *\nInclude %s\n", sshd.Port, floorClient.ConfigPath)), 0o600); err != nil {
		b.Fatal(err)
	}
	// The same through socat with TCP_NODELAY, the other benchmarks'
	// floor: ssh sets no TCP_NODELAY on a connection without a terminal,
	// so plain ssh meets Nagle's algorithm and sshd's delayed acks, which
	// a ProxyCommand's pipe never does.
	socatConfig := filepath.Join(dir, "socat_ssh_config")
	if err := os.WriteFile(socatConfig, []byte(fmt.Sprintf("Host node-*\n  ProxyCommand %s - TCP:%s,nodelay\n  HostKeyAlias 127.0.0.1\nHost *\nInclude %s\n", testenv.Bin(b, "socat"), sshd.Addr, floorClient.ConfigPath)), 0o600); err != nil {
		b.Fatal(err)
	}
	paths := []apath{
		{name: wanFloor, sshConfig: floorConfig, direct: true},
		{name: ansibleSocat, sshConfig: socatConfig, direct: true},
		{name: wanProxy, sshConfig: sshd.Client(b, tl.Proxy+" %h %p").ConfigPath},
		{name: ansibleShare, sshConfig: sshd.Client(b, tl.Proxy+" --share 60s --fdpass %h %p", "ProxyUseFdpass yes").ConfigPath, shared: true},
	}
	if tl.Plugin != "" {
		home := filepath.Join(dir, "home")
		if err := os.Mkdir(home, 0o700); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, apath{name: wanOfficial, sshConfig: sshd.Client(b, fmt.Sprintf("env HOME=%s %s -child -plugin %s %%h %%p", home, tl.Shim, tl.Plugin)).ConfigPath})
	} else {
		r.notes = append(r.notes, "The official client is not in this table: "+tl.OfficialErr.Error()+".")
	}
	for _, p := range paths {
		r.paths = append(r.paths, p.name)
	}

	// The shared processes of a run that failed midway are ended too,
	// before the emulator closes.
	var shareDirs []string
	defer func() {
		for _, d := range shareDirs {
			for _, pid := range testenv.SharedPIDs(d) {
				if testenv.IsSharedProcess(pid, d) {
					syscall.Kill(pid, syscall.SIGTERM)
				}
			}
		}
	}()

	n := 0
	for _, mode := range []string{modeNoPersist, modePersist} {
		r.secs[mode] = map[string][]float64{}
		r.sessions[mode] = map[string][]float64{}
		r.busy[mode], r.emu[mode] = map[string][]float64{}, map[string][]float64{}
		for i := range r.runs {
			for j := range paths {
				p := paths[(i+j)%len(paths)]
				n++
				run := filepath.Join(dir, fmt.Sprintf("run%d", n))
				if err := os.Mkdir(run, 0o755); err != nil {
					b.Fatal(err)
				}
				var inv strings.Builder
				inv.WriteString("[nodes]\n")
				for k, inst := range instances {
					if p.direct {
						fmt.Fprintf(&inv, "node-%d\n", k+1)
					} else {
						fmt.Fprintf(&inv, "node-%d ansible_host=%s\n", k+1, inst.ID)
					}
				}
				fmt.Fprintf(&inv, "\n[all:vars]\nansible_user=%s\nansible_ssh_common_args=-F %s\nbase=%s\n", sshd.User, p.sshConfig, filepath.Join(run, "remote"))
				runEnv, shareDir := env, ""
				if p.shared {
					// A runtime directory of the run's own, so that the
					// run starts with no shared session and its shared
					// processes are known by their pid files.
					xdg := filepath.Join(run, "xdg")
					if err := os.Mkdir(xdg, 0o700); err != nil {
						b.Fatal(err)
					}
					if err := os.Chmod(xdg, 0o700); err != nil {
						b.Fatal(err)
					}
					shareDir = filepath.Join(xdg, "ssm-proxy")
					shareDirs = append(shareDirs, shareDir)
					runEnv = append(slices.Clip(env), "XDG_RUNTIME_DIR="+xdg)
				}
				before := emu.Stats().SessionsStarted
				machine0, self0, cpuOK := cpuClock()
				secs := ansibleOnce(b, playbookBin, p.name, mode, run, play, inv.String(), p.sshConfig, runEnv)
				machine1, self1, _ := cpuClock()
				r.secs[mode][p.name] = append(r.secs[mode][p.name], secs)
				if cpuOK {
					r.busy[mode][p.name] = append(r.busy[mode][p.name], (machine1 - machine0).Seconds())
					r.emu[mode][p.name] = append(r.emu[mode][p.name], (self1 - self0).Seconds())
				}
				b.Logf("%-22s %-17s %.2f s", mode, p.name, secs)
				if p.shared {
					k := stopShared(b, shareDir)
					b.Logf("%-22s %-17s ended %d shared processes", mode, p.name, k)
					r.sharedLogs = append(r.sharedLogs, sharedLogs(b, shareDir)...)
				}
				if !p.direct {
					waitIdle(b, emu)
					r.sessions[mode][p.name] = append(r.sessions[mode][p.name], float64(emu.Stats().SessionsStarted-before))
				}
			}
		}
	}
	r.write(b)
}

// ansibleOnce runs the playbook once in run with the inventory inv, and
// ends the ControlPersist masters it left, and returns its wall time.
func ansibleOnce(b *testing.B, bin, path, mode, run, play, inv, sshConfig string, env []string) float64 {
	b.Helper()
	invFile := filepath.Join(run, "inventory.ini")
	cp := filepath.Join(run, "cp")
	sshArgs := "-o ControlMaster=no -o ControlPath=none"
	if mode == modePersist {
		sshArgs = "-o ControlMaster=auto -o ControlPersist=60s"
	}
	cfg := fmt.Sprintf(`[defaults]
inventory = %s
forks = %d
host_key_checking = True
interpreter_python = /usr/bin/python3
remote_tmp = %s
local_tmp = %s
retry_files_enabled = False
nocows = True

[ssh_connection]
ssh_args = %s
control_path_dir = %s
control_path = %%(directory)s/%%%%n
pipelining = True
`, invFile, ansibleHosts(), filepath.Join(run, "remote-tmp"), filepath.Join(run, "local-tmp"), sshArgs, cp)
	cfgFile := filepath.Join(run, "ansible.cfg")
	home := filepath.Join(run, "home")
	for _, x := range []struct{ name, data string }{{invFile, inv}, {cfgFile, cfg}} {
		if err := os.WriteFile(x.name, []byte(x.data), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, filepath.Join(play, "site.yml"))
	cmd.Dir = play
	cmd.Env = append(env, "ANSIBLE_CONFIG="+cfgFile, "HOME="+home, "ANSIBLE_FORCE_COLOR=0")
	cmd.WaitDelay = 10 * time.Second
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	secs := time.Since(start).Seconds()
	masters := stopMasters(b, cp, sshConfig)
	if mode == modePersist && masters != ansibleHosts() {
		b.Fatalf("%s %s: %d ControlPersist masters left, want one per host:\n%s", path, mode, masters, tail(out.String(), 2000))
	}
	if err != nil {
		b.Fatalf("%s %s: ansible-playbook: %v\n%s", path, mode, err, tail(out.String(), 4000))
	}
	if strings.Count(out.String(), "ok=4 ") != ansibleHosts() {
		b.Fatalf("%s %s: the recap does not say ok=4 for %d hosts:\n%s", path, mode, ansibleHosts(), tail(out.String(), 4000))
	}
	return secs
}

// stopMasters asks every ControlPersist master under dir to exit, through
// its control socket, so that the next run starts cold, and returns how
// many there were.
func stopMasters(b *testing.B, dir, sshConfig string) int {
	b.Helper()
	socks, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, s := range socks {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "ssh", "-F", sshConfig, "-o", "ControlPath="+s, "-O", "exit", "master").CombinedOutput()
		cancel()
		if err != nil {
			b.Logf("stopping the master at %s: %v %s", s, err, out)
		}
	}
	return len(socks)
}

// stopShared ends the shared processes that a run of ssm-proxy --share
// left in dir, with SIGTERM to the PIDs in their pid files and no other,
// so that the next run starts cold, and waits until they have exited and
// removed their sockets and pid files; it fails the benchmark if they do
// not within shareStopTimeout. It returns how many there were.
func stopShared(b *testing.B, dir string) int {
	b.Helper()
	pids := testenv.SharedPIDs(dir)
	for _, pid := range pids {
		if !testenv.IsSharedProcess(pid, dir) {
			b.Fatalf("%s: the pid file's process %d is not a shared ssm-proxy of this run", dir, pid)
		}
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			b.Logf("SIGTERM to shared process %d: %v", pid, err)
		}
	}
	deadline := time.Now().Add(shareStopTimeout)
	for {
		var alive []int
		for _, pid := range pids {
			if !testenv.ProcessGone(pid) {
				alive = append(alive, pid)
			}
		}
		socks, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
		pidFiles, _ := filepath.Glob(filepath.Join(dir, "*.sock.pid"))
		if len(alive) == 0 && len(socks) == 0 && len(pidFiles) == 0 {
			return len(pids)
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %s after SIGTERM, shared processes %v still alive, sockets %v and pid files %v left", dir, shareStopTimeout, alive, socks, pidFiles)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sharedLogs logs the shared processes' logs in dir (socket path + ".log")
// that are not empty, and returns the first line of each.
func sharedLogs(b *testing.B, dir string) []string {
	b.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "*.sock.log"))
	var first []string
	for _, l := range logs {
		data, err := os.ReadFile(l)
		text := strings.TrimSpace(string(data))
		if err != nil || text == "" {
			continue
		}
		b.Logf("the shared process's log %s:\n%s", l, tail(text, 2000))
		line, _, _ := strings.Cut(text, "\n")
		first = append(first, line)
	}
	return first
}

func (r *ansibleResults) write(b *testing.B) {
	b.Helper()
	report := r.markdown()
	b.Log("\n" + report)
	if *flagOut != "" {
		if err := replaceNamedSection(*flagOut, "ansible", report); err != nil {
			b.Fatal(err)
		}
	}
}

func (r *ansibleResults) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("## Ansible")
	w("")
	runHeader(w, r.started, *flagQuick, r.load, "bash bench/run.sh --ansible-only"+quickFlag())
	if r.version != "" {
		w("`%s` (Debian's ansible-core) runs a playbook of four tasks (file: a directory, copy: a 64 KiB file, command: `sha256sum` of it, template: a line using the command's result), `gather_facts: false`, over %d inventory hosts with forks %d (10 in a full run) and pipelining on, on loopback. The floor is plain ssh to the test sshd (10 names that the ssh config maps to its address and port, so that each is a host of its own to ssh); **socat, nodelay** is the same names through `ProxyCommand socat - TCP:sshd,nodelay`, the floor of the other sections: ssh sets no TCP_NODELAY on a connection without a terminal, so plain ssh's own TCP connection meets Nagle's algorithm and sshd's delayed acks, which a ProxyCommand's pipe never does; the others reach the same sshd through as many emulated instances, with ssh's `ProxyCommand` ssm-proxy, ssm-proxy `--share 60s --fdpass` (with `ProxyUseFdpass yes`, as `ssm-proxy ssh-config --share` writes it: ssh is handed the shared socket and the ProxyCommand exits) or the official client (through the shim, as the AWS CLI runs it: its Python start-up is not counted). With **ssm-proxy --share** each host's first ssh connection starts a background ssm-proxy that holds one AWS-StartPortForwardingSession for that host and serves a Unix socket, and every later connection to the host reaches it through the socket, with no session set-up of its own. Without ControlPersist every task opens its own ssh connections (`-o ControlMaster=no`), so every one pays a session set-up, except through --share; with it (`-o ControlMaster=auto -o ControlPersist=60s`) each host's first connection becomes a master that carries the rest. Every run starts cold: the masters (counted: one per host, or the run fails) are ended between runs, and so are the shared processes of --share, which has a runtime directory (`XDG_RUNTIME_DIR`) of its own per run: SIGTERM to the PIDs in its pid files and only those, and the run fails unless they exit and remove their sockets within %s. Wall time of `ansible-playbook`, median of %d runs per path and mode, paths in rotating order.", r.version, ansibleHosts(), ansibleHosts(), shareStopTimeout, r.runs)
		w("")
		cols := []string{}
		for _, p := range r.paths {
			cols = append(cols, p+", s")
		}
		for _, p := range r.paths[1:] {
			cols = append(cols, p+" ÷ floor")
		}
		w("| | %s |", strings.Join(cols, " | "))
		w("|---|%s", strings.Repeat("---:|", len(cols)))
		for _, mode := range []string{modeNoPersist, modePersist} {
			m := r.secs[mode]
			var cells []string
			for _, p := range r.paths {
				cells = append(cells, f(median(m[p]), 2))
			}
			for _, p := range r.paths[1:] {
				cells = append(cells, ratio(median(m[p]), median(m[wanFloor])))
			}
			w("| %s | %s |", mode, strings.Join(cells, " | "))
		}
		w("")
		var sess []string
		for _, p := range r.paths {
			if v, ok := r.sessions[modeNoPersist][p]; ok {
				sess = append(sess, fmt.Sprintf("%s %s / %s", p, f(median(v), 0), f(median(r.sessions[modePersist][p]), 0)))
			}
		}
		if len(sess) > 0 {
			w("SSM sessions per run (the emulator's count of sessions started: each one a session set-up paid), median, without / with ControlPersist: %s.", strings.Join(sess, "; "))
			if v, ok := r.sessions[modeNoPersist][ansibleShare]; ok {
				np, pe := median(v), median(r.sessions[modePersist][ansibleShare])
				verdict := "as here"
				if np != float64(ansibleHosts()) || pe != float64(ansibleHosts()) {
					verdict = fmt.Sprintf("but here it is %s without ControlPersist and %s with", f(np, 0), f(pe, 0))
				}
				w("For ssm-proxy --share it should be one per host, %d, in both modes (each host's first connection starts the host's shared session, which carries every later one), %s.", ansibleHosts(), verdict)
			}
			w("")
		}
		if len(r.busy[modeNoPersist]) > 0 {
			w("CPU per run, all processes on the machine's %d cores (from /proc/stat), median in core-seconds, and in brackets the part the emulator took (the benchmark process's own CPU: it plays the SSM API, the gateway and the agent, work the real service does on AWS's machines, not the user's):", runtime.NumCPU())
			w("")
			w("| | %s |", strings.Join(r.paths, " | "))
			w("|---|%s", strings.Repeat("---:|", len(r.paths)))
			for _, mode := range []string{modeNoPersist, modePersist} {
				var cells []string
				for _, p := range r.paths {
					cells = append(cells, fmt.Sprintf("%s (%s)", f(median(r.busy[mode][p]), 1), f(median(r.emu[mode][p]), 1)))
				}
				w("| %s | %s |", mode, strings.Join(cells, " | "))
			}
			w("")
		}
		w("### Targets")
		w("")
		w("| target | measured | |")
		w("|---|---|---|")
		pxs := r.proxyPaths()
		for _, mode := range []string{modeNoPersist, modePersist} {
			m := r.secs[mode]
			fl, so := median(m[wanFloor]), median(m[ansibleSocat])
			for _, p := range pxs {
				px := median(m[p])
				if fl > 0 && px > 0 {
					w("| Ansible %s: %s within 10 %% of the floor (plain ssh) | %.2f s vs %.2f s (%+.1f %%) | %s |", mode, p, px, fl, 100*(px/fl-1), mark(px <= 1.1*fl))
				}
				if so > 0 && px > 0 {
					w("| the same against socat, nodelay | %.2f s vs %.2f s (%+.1f %%) | %s |", px, so, 100*(px/so-1), mark(px <= 1.1*so))
				}
			}
		}
		w("")
		if v := r.verdicts(pxs); v != "" {
			w("**The target, ssm-proxy within 10 %% of the floor (plain ssh) in both modes: %s.**", v)
			w("")
		}
		w("<details><summary>Every run (s)</summary>")
		w("")
		w("| mode | path | runs |")
		w("|---|---|---|")
		for _, mode := range []string{modeNoPersist, modePersist} {
			for _, p := range r.paths {
				var s []string
				for _, v := range r.secs[mode][p] {
					s = append(s, fmt.Sprintf("%.2f", v))
				}
				w("| %s | %s | %s |", mode, p, strings.Join(s, ", "))
			}
		}
		w("")
		w("</details>")
		w("")
	}
	notes := r.notes
	if len(r.sharedLogs) > 0 {
		notes = append(slices.Clip(notes), fmt.Sprintf("%d of the shared processes wrote to their logs (socket path + `.log`); the first line of the first: `%s`.", len(r.sharedLogs), strings.ReplaceAll(r.sharedLogs[0], "`", "'")))
	}
	for _, n := range notes {
		w("Note: %s", n)
		w("")
	}
	return b.String()
}

// proxyPaths are the ssm-proxy paths that the target is about, in table
// order.
func (r *ansibleResults) proxyPaths() []string {
	var ps []string
	for _, p := range r.paths {
		if p == wanProxy || p == ansibleShare {
			ps = append(ps, p)
		}
	}
	return ps
}

// verdicts says, for each of paths, whether it meets the target (within
// 10 % of the floor in both modes), and by how much.
func (r *ansibleResults) verdicts(paths []string) string {
	var out []string
	for _, p := range paths {
		var met []bool
		var pct []string
		for _, mode := range []string{modeNoPersist, modePersist} {
			fl, px := median(r.secs[mode][wanFloor]), median(r.secs[mode][p])
			if fl <= 0 || px <= 0 {
				return ""
			}
			met = append(met, px <= 1.1*fl)
			pct = append(pct, fmt.Sprintf("%+.1f %%", 100*(px/fl-1)))
		}
		how, only := "misses it", ", missed in both modes"
		switch {
		case met[0] && met[1]:
			how, only = "meets it", ""
		case met[1]:
			only = ": met only with ControlPersist"
		case met[0]:
			only = ": met only without ControlPersist"
		}
		name := p
		if p == wanProxy {
			name = "ssm-proxy without --share"
		}
		out = append(out, fmt.Sprintf("%s %s (%s without ControlPersist, %s with%s)", name, how, pct[0], pct[1], only))
	}
	return strings.Join(out, "; ")
}
