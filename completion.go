package main

// Shell completion. The scripts are thin: on every TAB they run
// `ssm-proxy __complete N -- WORDS...` (WORDS the command line after the
// program name, N the index of the word being completed) and show what it
// prints, one "candidate<TAB>description" per line. Commands and flags come
// from the command table and the commands' own flag sets; targets from a
// short-lived cache of `ssm-proxy list`.

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/fsutil"
	"github.com/ssm-proxy/ssm-proxy/internal/target"
)

// completeCommand is the hidden command the scripts call.
const completeCommand = "__complete"

// The target cache.
const (
	targetCacheTTL       = 5 * time.Minute
	targetCacheTTLText   = "5 minutes"
	targetRefreshTimeout = 3 * time.Second
	targetRefreshText    = "3 seconds"
	// targetRetryAfter is how long a failed refresh is not tried again.
	targetRetryAfter = 30 * time.Second
)

// completion runs `ssm-proxy completion SHELL`.
func (c *cli) completion(_ context.Context, args []string) int {
	fs := c.newFlagSet("ssm-proxy completion")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return c.usageError(fmt.Errorf("completion: want one shell (%s), got %d arguments", strings.Join(shellNames, ", "), fs.NArg()))
	}
	script, ok := completionScript(fs.Arg(0))
	if !ok {
		return c.usageError(fmt.Errorf("completion: unknown shell %q: want %s", fs.Arg(0), strings.Join(shellNames, ", ")))
	}
	io.WriteString(c.stdout, script)
	return exitOK
}

// shellNames are the shells completion has a script for.
var shellNames = []string{"bash", "zsh", "fish", "powershell"}

func completionScript(shell string) (string, bool) {
	switch shell {
	case "bash":
		return bashCompletion, true
	case "zsh":
		return zshCompletion, true
	case "fish":
		return fishCompletion, true
	case "powershell", "pwsh":
		return powershellCompletion, true
	}
	return "", false
}

const bashCompletion = `# bash completion for ssm-proxy. Load it from ~/.bashrc:
#     source <(ssm-proxy completion bash)
_ssm_proxy() {
    local line
    COMPREPLY=()
    while IFS= read -r line; do
        COMPREPLY+=("${line%%$'\t'*}")
    done < <(command "${COMP_WORDS[0]}" ` + completeCommand + ` "$((COMP_CWORD - 1))" -- "${COMP_WORDS[@]:1}" 2>/dev/null)
}
complete -o default -F _ssm_proxy ssm-proxy
`

const zshCompletion = `#compdef ssm-proxy
# zsh completion for ssm-proxy. Load it from ~/.zshrc, after compinit:
#     source <(ssm-proxy completion zsh)
# or save it as _ssm-proxy in a directory of $fpath.
_ssm_proxy() {
  local -a cands
  local line
  for line in "${(@f)$(command ${words[1]} ` + completeCommand + ` $((CURRENT - 2)) -- "${(@)words[2,-1]}" 2>/dev/null)}"; do
    [[ -n $line ]] || continue
    if [[ $line == *$'\t'* ]]; then
      cands+=("${${line%%$'\t'*}//:/\\:}:${line#*$'\t'}")
    else
      cands+=("${line//:/\\:}")
    fi
  done
  if (( ${#cands} )); then
    _describe 'ssm-proxy' cands
  else
    _files
  fi
}
if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
  _ssm_proxy "$@"
else
  compdef _ssm_proxy ssm-proxy
fi
`

const fishCompletion = `# fish completion for ssm-proxy. Install it with
#     ssm-proxy completion fish > ~/.config/fish/completions/ssm-proxy.fish
function __ssm_proxy_complete
    set -l words (commandline -opc)
    set -l prog $words[1]
    set -e words[1]
    set -l out (command $prog ` + completeCommand + ` (count $words) -- $words (commandline -ct) 2>/dev/null)
    if test (count $out) -eq 0
        __fish_complete_path (commandline -ct)
    else
        printf '%s\n' $out
    end
end
complete -c ssm-proxy -f -a '(__ssm_proxy_complete)'
`

const powershellCompletion = `# PowerShell completion for ssm-proxy. Load it from $PROFILE:
#     ssm-proxy completion powershell | Out-String | Invoke-Expression
Register-ArgumentCompleter -Native -CommandName 'ssm-proxy', 'ssm-proxy.exe' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)
    $words = @($commandAst.CommandElements |
        Where-Object { $_.Extent.StartOffset -lt $cursorPosition } |
        ForEach-Object { $_.ToString() })
    $prog = $words[0]
    $words = @($words | Select-Object -Skip 1)
    $n = $words.Count
    if ($wordToComplete -ne '') { $n = $n - 1 }
    & $prog ` + completeCommand + ` $n -- @words 2>$null | ForEach-Object {
        $word, $desc = $_ -split "` + "`" + `t", 2
        if (-not $desc) { $desc = $word }
        [System.Management.Automation.CompletionResult]::new($word, $word, 'ParameterValue', $desc)
    }
}
`

// complete runs `ssm-proxy __complete N -- WORDS...` and prints the
// candidates for WORDS[N] (the empty word when N is past the end). It
// never prompts, prints nothing on stderr, and exits 0.
func (c *cli) complete(ctx context.Context, args []string) int {
	if len(args) < 2 || args[1] != "--" {
		return exitUsage
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 0 {
		return exitUsage
	}
	words := args[2:]
	cur := ""
	if n < len(words) {
		cur = words[n]
	}
	for _, cand := range c.candidates(ctx, words[:min(n, len(words))], cur) {
		fmt.Fprintln(c.stdout, cand)
	}
	return exitOK
}

// candidates are the completions of cur after the words before it.
func (c *cli) candidates(ctx context.Context, before []string, cur string) []string {
	cmd, rest := proxyCommandEntry(), before
	if len(before) > 0 {
		if sub, ok := lookup(before[0]); ok && !sub.hidden {
			cmd, rest = sub, before[1:]
		}
	}
	fs := c.flagsOf(ctx, cmd.name)
	if fs == nil {
		return nil
	}
	// A flag that takes a value as the last word wants that value (left
	// to the shell's file completion).
	pos, _, lastWants := splitArgs(fs, rest)
	if lastWants {
		return nil
	}
	dashes := slices.Contains(rest, "--")
	if strings.HasPrefix(cur, "-") && !dashes {
		return flagCandidates(fs, cur)
	}
	var out []string
	if len(before) == 0 {
		out = commandCandidates(cur)
	}
	kind := argOther
	if len(cmd.args) > 0 {
		kind = cmd.args[min(len(pos), len(cmd.args)-1)]
	}
	switch kind {
	case argTarget:
		fs.Parse(rest) // for --profile and --region; errors do not matter
		var o options
		if f := fs.Lookup("profile"); f != nil {
			o.profile = f.Value.String()
		}
		if f := fs.Lookup("region"); f != nil {
			o.region = f.Value.String()
		}
		out = append(out, c.targetCandidates(ctx, o, cur)...)
	case argCommand:
		if len(before) > 0 {
			out = commandCandidates(cur)
		}
	case argShell:
		for _, s := range shellNames {
			if strings.HasPrefix(s, cur) {
				out = append(out, s)
			}
		}
	}
	return out
}

func commandCandidates(cur string) []string {
	var out []string
	for _, cmd := range commands() {
		if !cmd.hidden && strings.HasPrefix(cmd.name, cur) {
			out = append(out, cmd.name+"\t"+cmd.summary)
		}
	}
	return out
}

func flagCandidates(fs *flag.FlagSet, cur string) []string {
	var out []string
	fs.VisitAll(func(f *flag.Flag) {
		name := "--" + f.Name
		if len(f.Name) == 1 {
			name = "-" + f.Name
		}
		if strings.HasPrefix(name, cur) {
			out = append(out, name)
		}
	})
	slices.Sort(out)
	return out
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// flagsOf returns the flag set of the command called name ("" for the
// ProxyCommand), as the command itself builds it: the command is run with
// -h and collectFlags catches the set instead of the help being printed.
func (c *cli) flagsOf(ctx context.Context, name string) *flag.FlagSet {
	var fs *flag.FlagSet
	probe := &cli{
		stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard,
		collectFlags: func(f *flag.FlagSet) { fs = f },
	}
	args := []string{"-h"}
	if name != "" {
		args = []string{name, "-h"}
	}
	probe.run(ctx, args)
	if fs != nil {
		fs.SetOutput(io.Discard)
		fs.Usage = func() {}
	}
	return fs
}

// targetCandidates are the ids and names in the target cache for o that
// start with cur. An expired or missing cache is refreshed first, within
// targetRefreshTimeout, in one attempt and without prompting; if that
// fails, what the cache had is used, and kept for targetRetryAfter before
// the next try, so that a TAB does not wait on a dead endpoint each time.
func (c *cli) targetCandidates(ctx context.Context, o options, cur string) []string {
	cache, fresh := c.loadTargets(o)
	if !fresh {
		ctx, cancel := context.WithTimeout(ctx, targetRefreshTimeout)
		defer cancel()
		refresh := &cli{stderr: io.Discard, now: c.now, prompt: noPrompt}
		quiet := slog.New(slog.DiscardHandler)
		nodes, err := refresh.listNodes(ctx, o, &used{}, target.Query{}, quiet, func(so *ssm.Options) { so.RetryMaxAttempts = 1 })
		if err != nil {
			if cache == nil {
				cache = &targetCache{}
			}
			nodes = cache.nodes()
			refresh.now = func() time.Time { return c.clock().Add(targetRetryAfter - targetCacheTTL) }
		}
		refresh.saveTargets(o, nodes, quiet)
		cache, _ = c.loadTargets(o)
	}
	if cache == nil {
		return nil
	}
	var out []string
	names := map[string]int{}
	for _, t := range cache.Targets {
		if t.Name != "" {
			names[t.Name]++
		}
	}
	for _, t := range cache.Targets {
		if strings.HasPrefix(t.ID, cur) {
			desc := strings.TrimSpace(t.Name + " " + t.Ping)
			out = append(out, t.ID+"\t"+desc)
		}
	}
	for _, t := range cache.Targets {
		// A name is a TARGET only when one node has it.
		if t.Name != "" && names[t.Name] == 1 && strings.HasPrefix(t.Name, cur) {
			out = append(out, t.Name+"\t"+t.ID+" "+t.Ping)
		}
	}
	return out
}

// noPrompt refuses to ask for an MFA code: completion runs inside the
// shell's line editor.
func noPrompt(string) (string, error) {
	return "", errors.New("completion does not ask for MFA codes")
}

// targetCache is the cached result of a full `ssm-proxy list`.
type targetCache struct {
	Time    time.Time      `json:"time"`
	Targets []cachedTarget `json:"targets"`
}

// nodes are the cached targets as list results, to write them back.
func (tc *targetCache) nodes() []node {
	var ns []node
	for _, t := range tc.Targets {
		ns = append(ns, node{ID: t.ID, Name: t.Name, PingStatus: t.Ping})
	}
	return ns
}

type cachedTarget struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Ping string `json:"ping,omitempty"`
}

// targetCachePath is the cache file for o: one per profile, region and
// SSM endpoint, as given by flags or the environment, so that completing
// needs no configuration to be loaded.
func targetCachePath(o options) (string, error) {
	dir, err := awscfg.DefaultCacheDir()
	if err != nil {
		return "", err
	}
	profile := cmp.Or(o.profile, os.Getenv("AWS_PROFILE"))
	region := cmp.Or(o.region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"))
	sum := sha256.Sum256([]byte(profile + "\x00" + region + "\x00" + os.Getenv("AWS_ENDPOINT_URL_SSM") + "\x00" + os.Getenv("AWS_ENDPOINT_URL")))
	return filepath.Join(dir, "targets-"+hex.EncodeToString(sum[:8])+".json"), nil
}

// loadTargets reads the target cache for o and says whether it is fresh.
func (c *cli) loadTargets(o options) (*targetCache, bool) {
	path, err := targetCachePath(o)
	if err != nil {
		return nil, false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	var tc targetCache
	if json.Unmarshal(data, &tc) != nil {
		return nil, false
	}
	age := c.clock().Sub(tc.Time)
	return &tc, age >= -time.Minute && age < targetCacheTTL
}

// saveTargets writes nodes, the result of a full list with o's profile
// and region, to the target cache (owner-only). Failures only matter to
// completion, so they are debug lines.
func (c *cli) saveTargets(o options, nodes []node, log *slog.Logger) {
	path, err := targetCachePath(o)
	if err == nil {
		tc := targetCache{Time: c.clock().UTC()}
		for _, n := range nodes {
			tc.Targets = append(tc.Targets, cachedTarget{ID: n.ID, Name: n.Name, Ping: n.PingStatus})
		}
		data, _ := json.Marshal(tc)
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			err = fsutil.WriteFileAtomic(path, data, 0o600)
		}
	}
	if err != nil {
		log.Debug("target cache not written", "err", err)
	}
}
