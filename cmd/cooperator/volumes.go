package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"cooperator.dev/cooperator/internal/backup"
)

func runSendVolumes(args []string) error {
	fs := flag.NewFlagSet("send-volumes", flag.ContinueOnError)
	setUsage(fs, `Usage: cooperator send-volumes --to URL --volume NAME=PATH [--volume ...]

Streams each --volume as a tar archive to a 'cooperator backup' that
waits for it (its --remote-volume and --listen), so that volumes mounted
where the store's keys must not go are backed up with the rest. The token
both present comes from $VOLUME_TOKEN.
`)
	var volumes listFlag
	to := fs.String("to", envOr("BACKUP_RUNNER_URL", ""), "The runner's address, http://host:port ($BACKUP_RUNNER_URL).")
	fs.Var(&volumes, "volume", "A data directory to send, name=path; repeatable.")
	wait := fs.Duration("wait", 30*time.Minute, "How long to wait for the runner to answer.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *to == "" {
		return errors.New("--to is required")
	}
	ctx, stop := signalContext()
	defer stop()
	start := time.Now()
	vs := parseVolumes(volumes)
	if err := backup.SendVolumes(ctx, *to, os.Getenv("VOLUME_TOKEN"), vs, *wait); err != nil {
		return fmt.Errorf("sending volumes failed: %w", err)
	}
	fmt.Fprintf(os.Stderr, "Sent %d volumes to %s in %s\n", len(vs), *to, time.Since(start).Round(time.Millisecond))
	return nil
}

func runReceiveVolumes(args []string) error {
	fs := flag.NewFlagSet("receive-volumes", flag.ContinueOnError)
	setUsage(fs, `Usage: cooperator receive-volumes --from URL --volume NAME=PATH [--volume ...]

Fetches each --volume of a backup from a 'cooperator restore' that serves
it (its --remote-volume and --listen) and unpacks it beside the live
files; swaps them in once the restore says its databases are restored,
and otherwise leaves every volume as it was. The token both present comes
from $VOLUME_TOKEN.
`)
	var volumes listFlag
	from := fs.String("from", envOr("RESTORE_RUNNER_URL", ""), "The runner's address, http://host:port ($RESTORE_RUNNER_URL).")
	fs.Var(&volumes, "volume", "A live data directory to restore, name=path; repeatable.")
	wait := fs.Duration("wait", 30*time.Minute, "How long to wait for the runner to answer.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" {
		return errors.New("--from is required")
	}
	ctx, stop := signalContext()
	defer stop()
	start := time.Now()
	vs := parseVolumes(volumes)
	if err := backup.ReceiveVolumes(ctx, *from, os.Getenv("VOLUME_TOKEN"), vs, *wait); err != nil {
		return fmt.Errorf("receiving volumes failed: %w", err)
	}
	fmt.Fprintf(os.Stderr, "Restored %d volumes from %s in %s\n", len(vs), *from, time.Since(start).Round(time.Millisecond))
	return nil
}
