package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// stdio is what a command reads and writes besides its arguments.
type stdio struct {
	out io.Writer
	err io.Writer
	env func(string) (string, bool)
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, std stdio) error
}

func commands() []command {
	return []command{
		{"dev", "run the whole fleet on this machine until interrupted", runDev},
		{"demo", "run the fleet, prove each demo circuit as the app would, print a summary", runDemo},
		{"migrate", "apply the SQL migrations and create the job stream and consumers", runMigrate},
		{"submit", "send one proof request the way the app does, and follow it", runSubmit},
		{"status", "print a request's status", runStatus},
		{"cancel", "cancel a queued or running request", runCancel},
		{"cleanup", "retention: delete (or strip the proofs of) old terminal rows", runCleanup},
	}
}

// run dispatches to a subcommand.
func run(ctx context.Context, args []string, std stdio) error {
	if len(args) == 0 {
		printUsage(std.err)
		return usagef("no command given")
	}
	name := args[0]
	switch name {
	case "help", "-h", "--help":
		printUsage(std.out)
		return nil
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, args[1:], std)
		}
	}
	printUsage(std.err)
	return usagef("unknown command %q", name)
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: proverctl COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\n`proverctl COMMAND --help` lists a command's flags and their environment variables.\n")
}

// flags is a subcommand's flag set whose flags can also come from
// environment variables (a flag on the command line wins).
type flags struct {
	*pflag.FlagSet
	env  map[string]string // flag name → variable
	args string            // positional arguments, for the usage line
}

func newFlags(name, args, about string, std stdio) *flags {
	fs := pflag.NewFlagSet("proverctl "+name, pflag.ContinueOnError)
	fs.SetOutput(std.err)
	fs.SortFlags = false
	f := &flags{FlagSet: fs, env: map[string]string{}, args: args}
	fs.Usage = func() {
		fmt.Fprintf(std.err, "Usage: proverctl %s [flags] %s\n\n%s\n\nFlags (environment variables in brackets):\n", name, args, about)
		fs.VisitAll(func(fl *pflag.Flag) {
			if v := f.env[fl.Name]; v != "" && !strings.Contains(fl.Usage, "["+v+"]") {
				fl.Usage += " [" + v + "]"
			}
		})
		fmt.Fprint(std.err, fs.FlagUsages())
	}
	return f
}

// bind reads flag from the environment variable v when it is not on the
// command line.
func (f *flags) bind(flag, v string) { f.env[flag] = v }

// parse parses args, then fills unset flags from the environment.
func (f *flags) parse(args []string, std stdio) error {
	if err := f.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return err
		}
		return usageError{err.Error()}
	}
	names := make([]string, 0, len(f.env))
	for name := range f.env {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fl := f.Lookup(name)
		if fl == nil || fl.Changed {
			continue
		}
		v, ok := std.env(f.env[name])
		if !ok || v == "" {
			continue
		}
		if err := f.Set(name, v); err != nil {
			return usagef("%s=%q: %v", f.env[name], v, err)
		}
	}
	return nil
}

// isTerminal reports whether w is a terminal (for live displays).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
