package config

import (
	"bytes"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// keySet holds the dotted keys a YAML document sets, named as in KeyError:
// "sip.keepalive_interval", "media.dscp.audio", "listen[0].addr". A key
// whose value is null ("timeout:" or "timeout: ~") is not set. Defaults
// are applied only to keys that are not set, so an explicit 0 stays 0.
type keySet map[string]bool

// maxKeyNodes bounds the walk of a document (aliases are followed).
const maxKeyNodes = 1 << 20

var errTooManyNodes = errors.New("document too large or too deeply aliased")

// setKeys returns the keys the first YAML document of b sets.
func setKeys(b []byte) (keySet, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	w := keyWalker{keys: keySet{}}
	w.walk(&doc, "")
	if w.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSyntax, w.err)
	}
	return w.keys, nil
}

type keyWalker struct {
	keys  keySet
	nodes int
	err   error
}

func (w *keyWalker) walk(n *yaml.Node, prefix string) {
	if n == nil || w.err != nil {
		return
	}
	if w.nodes++; w.nodes > maxKeyNodes {
		w.err = errTooManyNodes
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			w.walk(c, prefix)
		}
	case yaml.AliasNode:
		w.walk(n.Alias, prefix)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				// "<<: *base" (or a list of them) sets the keys of the
				// merged mappings at this level.
				w.merge(v, prefix)
				continue
			}
			key := k.Value
			if prefix != "" {
				key = prefix + "." + key
			}
			w.set(key, v)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			w.set(fmt.Sprintf("%s[%d]", prefix, i), c)
		}
	}
}

func (w *keyWalker) set(key string, v *yaml.Node) {
	if isNull(v) {
		return
	}
	w.keys[key] = true
	w.walk(v, key)
}

func (w *keyWalker) merge(v *yaml.Node, prefix string) {
	for v != nil && v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v == nil {
		return
	}
	if v.Kind == yaml.SequenceNode {
		for _, c := range v.Content {
			w.merge(c, prefix)
		}
		return
	}
	w.walk(v, prefix)
}

func isNull(n *yaml.Node) bool {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}
