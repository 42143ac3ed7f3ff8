package imds

import (
	"bytes"
	"context"
	"sort"
	"strings"
)

// node is one entry of the metadata tree: a directory (children != nil) or a
// leaf (value or dyn). Trees are immutable once built, so requests read them
// without locks.
type node struct {
	name  string // path segment
	entry string // how the parent lists it: "name", "name/" or "0=key-name"
	since string // first version that has it; "" means every version

	children []*node
	index    map[string]*node // built for large directories only
	listing  []byte           // the listing with every child (the "latest" view)

	value []byte
	dyn   func(ctx context.Context) ([]byte, error)
	octet bool // served as application/octet-stream (user-data)
}

func (n *node) isDir() bool { return n.children != nil }

// dir builds a directory from its children in listing order; nil children
// (categories that do not apply to this instance) are dropped.
func dir(name, since string, kids ...*node) *node {
	n := &node{name: name, entry: name + "/", since: since, children: make([]*node, 0, len(kids))}
	for _, k := range kids {
		if k != nil {
			n.children = append(n.children, k)
		}
	}
	n.finish()
	return n
}

// sortedDir is dir with children in name order, as EC2 lists meta-data.
func sortedDir(name, since string, kids ...*node) *node {
	n := dir(name, since, kids...)
	sort.SliceStable(n.children, func(i, j int) bool { return n.children[i].name < n.children[j].name })
	n.finish()
	return n
}

func (n *node) finish() {
	n.listing = n.list("")
	if len(n.children) > 8 {
		n.index = make(map[string]*node, len(n.children))
		for _, k := range n.children {
			n.index[k.name] = k
		}
	} else {
		n.index = nil
	}
}

func leaf(name, since, value string) *node {
	return &node{name: name, entry: name, since: since, value: []byte(value)}
}

func lines(name, since string, values []string) *node {
	return leaf(name, since, strings.Join(values, "\n"))
}

func dynLeaf(name, since string, f func(ctx context.Context) ([]byte, error)) *node {
	return &node{name: name, entry: name, since: since, dyn: f}
}

// when returns n if cond holds, so optional categories read inline.
func when(cond bool, n func() *node) *node {
	if !cond {
		return nil
	}
	return n()
}

// visible reports whether n exists in version v ("" or "latest" see everything).
// Versions compare as strings: "1.0" sorts before every dated version.
func (n *node) visible(v string) bool {
	return n.since == "" || v == "" || v == latest || n.since <= v
}

func (n *node) child(name string, v string) *node {
	var c *node
	if n.index != nil {
		c = n.index[name]
	} else {
		for _, k := range n.children {
			if k.name == name {
				c = k
				break
			}
		}
	}
	if c == nil || !c.visible(v) {
		return nil
	}
	return c
}

// list renders the directory as version v sees it: one entry per line, no
// trailing newline.
func (n *node) list(v string) []byte {
	var b bytes.Buffer
	for _, k := range n.children {
		if !k.visible(v) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(k.entry)
	}
	return b.Bytes()
}

// listFor returns the listing for version v, reusing the precomputed one when
// v sees every child.
func (n *node) listFor(v string) []byte {
	for _, k := range n.children {
		if !k.visible(v) {
			return n.list(v)
		}
	}
	return n.listing
}

// resolve walks path (the URL path below the version, e.g. "meta-data/iam/info")
// from root for version v. Empty segments are skipped, so "a//b" and "a/b/"
// resolve like "a/b". It returns nil when the path does not exist.
func resolve(root *node, path string, v string) *node {
	n := root
	for path != "" {
		var seg string
		if i := strings.IndexByte(path, '/'); i >= 0 {
			seg, path = path[:i], path[i+1:]
		} else {
			seg, path = path, ""
		}
		if seg == "" {
			continue
		}
		if !n.isDir() {
			return nil
		}
		if n = n.child(seg, v); n == nil {
			return nil
		}
	}
	return n
}
