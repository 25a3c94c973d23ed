// Command localcluster runs the local control plane of internal/testenv in
// the foreground until it is told to stop. `make cluster` and `make demo`
// start it in the background.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"cooperator.dev/cooperator/internal/testenv"
)

func main() {
	dir := flag.String("dir", ".local/cluster", "Folder for the cluster's data, certificates and logs; emptied at start.")
	kubeconfig := flag.String("kubeconfig", ".local/kubeconfig", "Where to write the admin kubeconfig.")
	nodes := flag.Int("nodes", 2, "How many fake nodes to create.")
	flag.Parse()

	if err := run(*dir, *kubeconfig, *nodes); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run(dir, kubeconfig string, nodes int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	_ = os.Remove(kubeconfig)
	env, err := testenv.Start(ctx, testenv.Options{Dir: dir, Nodes: nodes})
	if err != nil {
		return err
	}
	defer env.Stop()

	data, err := os.ReadFile(env.Kubeconfig)
	if err != nil {
		return err
	}
	// Written last: its presence tells `make cluster` that the cluster is up.
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		return err
	}
	fmt.Printf("Local control plane is up: %s (logs in %s)\n", env.Config.Host, dir)
	<-ctx.Done()
	fmt.Println("Stopping the local control plane")
	return nil
}
