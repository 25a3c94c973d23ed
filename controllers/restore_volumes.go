package controllers

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/backup"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
)

// restoreVolumes are the target's claims that the backup holds, app by
// app, and they become the runner's remote volumes. A volume of the
// backup that the target has no claim of the same name for stays in the
// store; a claim the backup does not hold stays as it is.
func (r *RestoreReconciler) restoreVolumes(ctx context.Context, p *restorePlan) ([]specs.AppVolumes, error) {
	m, err := p.client.Manifest(ctx, p.job.Source, p.job.ID)
	if err != nil {
		return nil, fmt.Errorf("while reading the manifest of backup %s: %w", p.job.ID, err)
	}
	inBackup := map[string]bool{}
	for _, o := range m.Objects {
		if o.Kind == backup.KindVolume {
			inBackup[o.Volume] = true
		}
	}
	if len(inBackup) == 0 {
		return nil, nil
	}
	all, _, err := appVolumes(ctx, r.Client, p.target)
	if err != nil {
		return nil, err
	}
	var vols []specs.AppVolumes
	p.job.RemoteVolumes = nil
	for _, v := range all {
		v.Claims = slices.DeleteFunc(v.Claims, func(c string) bool { return !inBackup[c] })
		if len(v.Claims) > 0 {
			vols = append(vols, v)
			p.job.RemoteVolumes = append(p.job.RemoteVolumes, v.Claims...)
		}
	}
	return vols, nil
}

// startReceivers puts in place what brings the volumes back: the token in
// the coop's namespace, the runner's Service, and a receiver Job per app,
// with its claims mounted, while the apps are down.
func (r *RestoreReconciler) startReceivers(ctx context.Context, restore *v1alpha1.Restore, p *restorePlan, vols []specs.AppVolumes, token string) error {
	if len(vols) == 0 {
		return nil
	}
	if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &corev1.Secret{}, specs.RestoreReceiverSecret(restore, p.target, token), corev1ac.ExtractSecret); err != nil {
		return fmt.Errorf("while applying the receivers' token: %w", err)
	}
	if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &corev1.Service{}, specs.RestoreRunnerService(restore, p.target, r.Options), corev1ac.ExtractService); err != nil {
		return fmt.Errorf("while applying the restore runner's Service: %w", err)
	}
	for _, v := range vols {
		if _, _, err := r.runJob(ctx, specs.VolumeReceiverJob(restore, p.target, v, r.Options)); err != nil {
			return err
		}
	}
	return nil
}
