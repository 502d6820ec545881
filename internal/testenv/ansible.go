package testenv

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// INI is a parsed INI file as Ansible writes them (inventories,
// ansible.cfg): its sections in file order, each with its lines, trimmed,
// without blank lines and comments.
type INI []INISection

// INISection is one [section] of an INI file.
type INISection struct {
	Name  string
	Lines []string
}

// Section returns the lines of the section called name.
func (ini INI) Section(name string) []string {
	for _, s := range ini {
		if s.Name == name {
			return s.Lines
		}
	}
	return nil
}

// ReadINI parses the INI file at path. A malformed section header or a
// line outside any section is an error.
func ReadINI(path string) (INI, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ini INI
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("%s:%d: bad section %q", path, n, line)
			}
			ini = append(ini, INISection{Name: strings.Trim(line, "[]")})
		case len(ini) == 0:
			return nil, fmt.Errorf("%s:%d: %q outside a section", path, n, line)
		default:
			ini[len(ini)-1].Lines = append(ini[len(ini)-1].Lines, line)
		}
	}
	return ini, sc.Err()
}

// AnsibleHost is one host line of an inventory.
type AnsibleHost struct {
	Group, Name string
	Target      string // what ssh is given: ansible_host, else Name
}

// AnsibleInventory is what the tests use of an INI inventory: its hosts,
// in file order, and ansible_ssh_common_args of [all:vars] split into
// arguments.
type AnsibleInventory struct {
	Hosts   []AnsibleHost
	SSHArgs []string
}

// ReadAnsibleInventory reads the INI inventory at path.
func ReadAnsibleInventory(path string) (AnsibleInventory, error) {
	var inv AnsibleInventory
	ini, err := ReadINI(path)
	if err != nil {
		return inv, err
	}
	for _, sec := range ini {
		for _, l := range sec.Lines {
			if strings.HasSuffix(sec.Name, ":vars") {
				if v, ok := strings.CutPrefix(l, "ansible_ssh_common_args="); ok && sec.Name == "all:vars" {
					inv.SSHArgs = SplitArgs(v)
				}
				continue
			}
			fields := strings.Fields(l)
			h := AnsibleHost{Group: sec.Name, Name: fields[0], Target: fields[0]}
			for _, kv := range fields[1:] {
				if v, ok := strings.CutPrefix(kv, "ansible_host="); ok {
					h.Target = v
				}
			}
			inv.Hosts = append(inv.Hosts, h)
		}
	}
	return inv, nil
}

// SplitArgs splits a command line the way Ansible's shlex does for what
// inventories here use: spaces separate, double quotes group.
func SplitArgs(s string) []string {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, have = !inQuote, true
		case r == ' ' && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}
