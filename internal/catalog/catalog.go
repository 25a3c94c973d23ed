// Package catalog reads the host's catalog of apps: the Blueprints in
// config/catalog, one file each, decoded strictly so that a misspelt field
// fails instead of being dropped.
package catalog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// Decode reads one Blueprint. Unknown and duplicate fields are errors, and
// field names are matched case-sensitively, as the API server does.
func Decode(data []byte) (*v1alpha1.Blueprint, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	bp := &v1alpha1.Blueprint{}
	strict, err := kjson.UnmarshalStrict(j, bp)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(strict...); err != nil {
		return nil, err
	}
	if bp.APIVersion != v1alpha1.GroupVersion.String() || bp.Kind != "Blueprint" {
		return nil, fmt.Errorf("%s %s is not a %s Blueprint", bp.APIVersion, bp.Kind, v1alpha1.GroupVersion)
	}
	return bp, nil
}

// Load reads every Blueprint in dir, in file name order; kustomization.yaml
// is the catalog's own and is skipped.
func Load(dir string) ([]*v1alpha1.Blueprint, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []*v1alpha1.Blueprint
	for _, name := range names {
		if filepath.Base(name) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		bp, err := Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(name), err)
		}
		out = append(out, bp)
	}
	return out, nil
}
