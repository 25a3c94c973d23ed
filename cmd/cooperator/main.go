// Command cooperator is the operator's one binary. Its subcommands:
//
//	manager   run the controllers (the default)
//	backup    back up a coop's databases and volumes to S3
//	restore   restore a backup, after checking every object
//	verify    check a backup's objects; with --scratch-db, a restore drill
//	send-volumes  stream volumes to a running backup from where they are mounted
//	receive-volumes  bring volumes back from a running restore where they are mounted
package main

import (
	"fmt"
	"os"
)

const usage = `Usage: cooperator [command] [flags]

Commands:
  manager   run the controllers (the default)
  backup    back up a coop's databases and volumes to S3
  restore   restore a backup, after checking every object
  verify    check a backup's objects; with --scratch-db, a restore drill
  send-volumes
            stream volumes to a running backup from where they are mounted
  receive-volumes
            bring volumes back from a running restore where they are mounted

'cooperator <command> -h' lists a command's flags.
`

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
	case "backup":
		err = runBackup(args)
	case "restore":
		err = runRestore(args)
	case "verify":
		err = runVerify(args)
	case "send-volumes":
		err = runSendVolumes(args)
	case "receive-volumes":
		err = runReceiveVolumes(args)
	case "help":
		fmt.Print(usage)
	default:
		err = fmt.Errorf("unknown command %q\n\n%s", cmd, usage)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cooperator:", err)
		writeTerminationMessage(err)
		os.Exit(1)
	}
}
