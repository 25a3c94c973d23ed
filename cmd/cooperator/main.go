// Command cooperator is the operator's one binary. Its subcommands:
//
//	manager   run the controllers (the default)
package main

import (
	"fmt"
	"os"
)

func main() {
	args := os.Args[1:]
	cmd := "manager"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "manager":
		err = runManager(args)
	default:
		err = fmt.Errorf("unknown command %q; known: manager", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cooperator:", err)
		os.Exit(1)
	}
}
