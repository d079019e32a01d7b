// Package cli is the snappea command line: the subcommands, their flags
// and environment variables, signal handling and exit codes. The stock
// binary, cmd/snappea, is one call to [Main]; a program with its own tasks
// builds its daemon the same way, handing Main its own registry, and gets
// every subcommand and flag for free:
//
//	func main() {
//		os.Exit(cli.Main(tasks.Registry))
//	}
//
// Every binary built this way also has the built-in snappea.* tasks
// (see registry.RegisterBuiltins), for smoke tests and benchmarks. A program
// that also runs services beside its workers uses [MainProgram] with a
// [Program]; schedules declared in code go through [Schedules].
//
// The daemon ('snappea run') is package daemon's Daemon, which a program
// can also embed without the command line; this package adds its flags,
// signals, control socket, systemd notifications and reloads. It answers
// signals and its control socket (see package control): TERM stops, INT
// stops and then escalates, HUP reloads by re-executing the program on disk
// after a --check run, TSTP and CONT pause and resume, USR1 reopens the log
// file. It exits with
// [ExitDataDirGone] when its database, lock file or control socket leaves
// its path while it runs. The commands that talk to it wait at most
// --control-timeout for each answer.
//
// Tasks marked Isolated, or every task with 'snappea run --isolation
// process', run in child processes: the same binary started again with a
// hidden subcommand, so a program built on Main has its own registry there
// too, and needs nothing more (see package prefork).
//
// This is the only package that reads flags, the environment or signals;
// the packages it wires together take a Config and a context.
package cli
