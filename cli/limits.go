package cli

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// taskLimits is a repeatable TASK=N flag (--max-running).
type taskLimits map[string]int

func (l *taskLimits) String() string {
	if l == nil || len(*l) == 0 {
		return ""
	}
	var parts []string
	for name, n := range *l {
		parts = append(parts, name+"="+strconv.Itoa(n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (l *taskLimits) Set(v string) error {
	name, num, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want TASK=N, such as email.send=4, not %q", v)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return fmt.Errorf("%q: N must be a whole number, 1 or more (0: no limit)", v)
	}
	if *l == nil {
		*l = taskLimits{}
	}
	(*l)[name] = n
	return nil
}

// taskNames is a repeatable TASK flag (--retry-lost).
type taskNames []string

func (n *taskNames) String() string {
	if n == nil {
		return ""
	}
	return strings.Join(*n, ",")
}

func (n *taskNames) Set(v string) error {
	if v == "" {
		return fmt.Errorf("want a task name")
	}
	*n = append(*n, v)
	return nil
}
