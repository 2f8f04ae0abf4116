package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// blockYAML rewrites a JSON object as block-style YAML, keeping its keys in their order.
//
// It replaces sigs.k8s.io/yaml's Marshal on the operator's hot path: that converts JSON to YAML
// by parsing the JSON with a YAML 1.1 parser and emitting the tree again, which cost about
// 140 µs and 170 KB of garbage per config, a quarter of everything the operator allocated while
// converging 1,000 assets. Copying the JSON's own tokens into place costs a few microseconds.
//
// Numbers, true, false and null keep their JSON spelling, which YAML reads as the same value.
// Strings that a YAML 1.1 reader can only take for the same string, such as names, paths and
// URLs, are written plain so that a person reading the ConfigMap sees "flavor: btcwallet"; any
// other string is double-quoted with JSON's escapes, a subset of YAML's.
func blockYAML(j []byte) ([]byte, error) {
	if !json.Valid(j) {
		return nil, errors.New("writing YAML: the input is not JSON")
	}
	w := yamlWriter{in: j}
	w.space()
	if w.peek() != '{' {
		return nil, errors.New("writing YAML: the input is not a JSON object")
	}
	w.out.Grow(len(j) + len(j)/2)
	if w.empty('{', '}') {
		w.out.WriteString("{}\n")
	} else {
		w.object(0, false)
	}
	return w.out.Bytes(), nil
}

// yamlWriter walks JSON that json.Valid has accepted, so it need not check its syntax again.
type yamlWriter struct {
	in  []byte
	at  int
	out bytes.Buffer
}

func (w *yamlWriter) space() {
	for w.at < len(w.in) && strings.IndexByte(" \t\r\n", w.in[w.at]) >= 0 {
		w.at++
	}
}

func (w *yamlWriter) peek() byte { return w.in[w.at] }

// empty reports whether the object or array starting here has nothing in it, and if so steps
// past it.
func (w *yamlWriter) empty(open, close byte) bool {
	at := w.at
	w.at++
	w.space()
	if w.peek() == close {
		w.at++
		return true
	}
	w.at = at
	return false
}

// scalar returns the string, number, true, false or null starting here, as written.
func (w *yamlWriter) scalar() []byte {
	start := w.at
	if w.in[w.at] == '"' {
		for w.at++; w.in[w.at] != '"'; w.at++ {
			if w.in[w.at] == '\\' {
				w.at++
			}
		}
		w.at++
	} else {
		for w.at < len(w.in) && strings.IndexByte(",}] \t\r\n", w.in[w.at]) < 0 {
			w.at++
		}
	}
	return w.in[start:w.at]
}

// object writes the members of the object starting here, each on its own line at indent. With
// onLine the first member goes on the line already begun, after a sequence's "- ".
func (w *yamlWriter) object(indent int, onLine bool) {
	w.at++ // '{'
	for first := true; ; first = false {
		w.space()
		if !first || !onLine {
			w.indent(indent)
		}
		key := w.scalar()
		if k := key[1 : len(key)-1]; isPlainKey(k) {
			w.out.Write(k)
		} else {
			w.quoted(key)
		}
		w.space()
		w.at++ // ':'
		w.out.WriteByte(':')
		w.value(indent, false)
		w.space()
		w.at++
		if w.in[w.at-1] == '}' {
			return
		}
	}
}

// array writes the items of the array starting here, as object does its members.
func (w *yamlWriter) array(indent int, onLine bool) {
	w.at++ // '['
	for first := true; ; first = false {
		w.space()
		if !first || !onLine {
			w.indent(indent)
		}
		w.out.WriteByte('-')
		w.value(indent, true)
		w.space()
		w.at++
		if w.in[w.at-1] == ']' {
			return
		}
	}
}

// value writes what follows a key's colon, or a sequence item's dash, through its line's end
// and the lines of what it holds, nested under indent.
func (w *yamlWriter) value(indent int, item bool) {
	w.space()
	switch c := w.peek(); {
	case c == '{' && w.empty('{', '}'):
		w.out.WriteString(" {}\n")
	case c == '[' && w.empty('[', ']'):
		w.out.WriteString(" []\n")
	case c == '{' || c == '[':
		if item {
			w.out.WriteByte(' ')
		} else {
			w.out.WriteByte('\n')
		}
		if c == '{' {
			w.object(indent+2, item)
		} else {
			w.array(indent+2, item)
		}
	case c == '"':
		w.out.WriteByte(' ')
		if s := w.scalar(); isPlainValue(s[1 : len(s)-1]) {
			w.out.Write(s[1 : len(s)-1])
		} else {
			w.quoted(s)
		}
		w.out.WriteByte('\n')
	default:
		w.out.WriteByte(' ')
		w.out.Write(w.scalar())
		w.out.WriteByte('\n')
	}
}

// quoted writes a JSON string as a YAML double-quoted one. JSON leaves some characters raw that
// YAML refuses (controls from U+007F) or reads as a line break (U+0085), and a reader may drop a
// U+FEFF; those are escaped.
func (w *yamlWriter) quoted(s []byte) {
	start := 0
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			if s[i] == 0x7f {
				w.out.Write(s[start:i])
				w.out.WriteString(`\u007f`)
				start = i + 1
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r < 0xa0 || r == 0xfeff || r == 0xfffe || r == 0xffff {
			w.out.Write(s[start:i])
			fmt.Fprintf(&w.out, `\u%04x`, r)
			start = i + n
		}
		i += n
	}
	w.out.Write(s[start:])
}

func (w *yamlWriter) indent(n int) {
	for range n {
		w.out.WriteByte(' ')
	}
}

// isPlainKey reports whether a key, as written between JSON's quotes, reads back from YAML
// unquoted as the same string: a name, and not one of the words YAML 1.1 takes for a boolean
// or null.
func isPlainKey(k []byte) bool {
	if len(k) == 0 || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return !isYAMLWord(k)
}

// isPlainValue reports whether a string value, as written between JSON's quotes, reads back from
// YAML unquoted as the same string. It starts with a letter, '_', '/' or a ':' that is not the
// last character (YAML takes ':' for an indicator only before a space), so YAML cannot take it
// for a number, a date or an indicator; it holds no space, quote, backslash, '#' or flow
// character, and no ':' at its end, so it cannot end the scalar early; and it is not a word that
// YAML 1.1 reads as a boolean or null.
func isPlainValue(v []byte) bool {
	if len(v) == 0 || v[len(v)-1] == ':' {
		return false
	}
	if c := v[0]; !(c == '_' || c == '/' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return false
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_./:@-", c) >= 0) {
			return false
		}
	}
	return !isYAMLWord(v)
}

// isYAMLWord reports whether YAML 1.1 reads s, unquoted, as a boolean or null in some spelling.
func isYAMLWord(s []byte) bool {
	switch strings.ToLower(string(s)) {
	case "y", "yes", "n", "no", "true", "false", "on", "off", "null":
		return true
	}
	return false
}
