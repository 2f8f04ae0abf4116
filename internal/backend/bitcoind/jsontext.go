package bitcoind

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/valyala/fastjson"
)

// A reply's text is walked here to find where its members and a listing's entries are, so that
// fastjson parses each piece that is read on its own (see streamedResult) and nothing parses
// what is skipped. The walk checks the structure it crosses (quotes, colons, commas, brackets);
// what it skips without reading (a key this client does not read, the RPC id) is checked by
// fastjson's validator, and every piece that is read is checked by the parse that reads it, so a
// reply is held to JSON's rules as a whole parse held it. Finding the ends costs a pass over the
// text: most of it is in strings (txids, hashes, addresses), which IndexByte crosses.

// span is where a JSON value is in a reply's text.
type span struct{ start, end int }

// syntaxError says where the text stops being JSON.
func syntaxError(b []byte, i int, want string) error {
	if i >= len(b) {
		return fmt.Errorf("cannot parse JSON: the text ends where %s was expected", want)
	}
	tail := b[i:min(len(b), i+20)]
	return fmt.Errorf("cannot parse JSON: %s expected at offset %d, found %q", want, i, tail)
}

// arrayItems finds the elements of the JSON array at b[at] and where the array ends; null has
// none. The elements are found before any is read, so that what they are read into is sized
// once. The elements themselves are not checked: their reader parses them.
func arrayItems(b []byte, at int) (items []span, end int, err error) {
	i, end, err := enter(b, at, '[', ']', "array")
	if i < 0 || err != nil {
		return nil, end, err
	}
	for {
		end, err := skipValue(b, i)
		if err != nil {
			return nil, end, err
		}
		items = append(items, span{i, end})
		if i, end, err = next(b, end, ']'); i < 0 || err != nil {
			return items, end, err
		}
	}
}

// walkObject calls member with each key of the JSON object at b[at] and where the key's value
// starts; member reads or skips the value and returns where it ends. walkObject returns where
// the object ends; null is an object without keys. A key is compared as text once unescaped, as
// fastjson's Visit gives it.
func walkObject(b []byte, at int, member func(key []byte, at int) (int, error)) (int, error) {
	i, end, err := enter(b, at, '{', '}', "object")
	for i >= 0 && err == nil {
		if b[i] != '"' {
			return i, syntaxError(b, i, "a key")
		}
		if end, err = skipString(b, i); err != nil {
			return end, err
		}
		key := b[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			if err := json.Unmarshal(b[i:end], &k); err != nil {
				return end, fmt.Errorf("key %s: %w", b[i:end], err)
			}
			key = []byte(k)
		}
		if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
			return i, syntaxError(b, i, "':'")
		}
		if end, err = member(key, skipSpace(b, i+1)); err != nil {
			return end, fmt.Errorf("%s: %w", key, err)
		}
		i, end, err = next(b, end, '}')
	}
	return end, err
}

// enter opens the array or object (open, close, kind) at b[at]: it returns where its first
// member starts, or -1 and where the value ends when it is null or empty, or an error when it
// is something else.
func enter(b []byte, at int, open, close byte, kind string) (first, end int, err error) {
	i := skipSpace(b, at)
	switch {
	case i >= len(b):
		return -1, i, syntaxError(b, i, "a value")
	case isNull(b, i):
		return -1, i + 4, nil
	case b[i] != open:
		end, err := skipChecked(b, i)
		if err == nil {
			err = fmt.Errorf("is a JSON %s, not an %s", jsonKind(b[i]), kind)
		}
		return -1, end, err
	}
	if i = skipSpace(b, i+1); i < len(b) && b[i] == close {
		return -1, i + 1, nil
	}
	if i >= len(b) {
		return -1, i, syntaxError(b, i, "a value")
	}
	return i, 0, nil
}

// next reads what follows a member ending at b[end] of the array or object closed by close: it
// returns where the next member starts, or -1 and where the whole ends.
func next(b []byte, end int, close byte) (following, whole int, err error) {
	switch i := skipSpace(b, end); {
	case i < len(b) && b[i] == close:
		return -1, i + 1, nil
	case i < len(b) && b[i] == ',':
		if i = skipSpace(b, i+1); i >= len(b) {
			return -1, i, syntaxError(b, i, "a value")
		}
		return i, 0, nil
	default:
		return -1, i, syntaxError(b, i, fmt.Sprintf("',' or '%c'", close))
	}
}

// skipChecked returns where the JSON value at b[i] ends, having checked that it is JSON: for a
// value that is skipped without being read.
func skipChecked(b []byte, i int) (int, error) {
	end, err := skipValue(b, i)
	if err != nil {
		return end, err
	}
	if err := fastjson.ValidateBytes(b[i:end]); err != nil {
		return end, err
	}
	return end, nil
}

// skipValue returns where the JSON value at b[i] ends, checking only that its brackets and
// quotes close (its reader, or skipChecked, checks the rest).
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return i, syntaxError(b, i, "a value")
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skipString(b, j)
				if err != nil {
					return end, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
		}
		return len(b), syntaxError(b, len(b), "a closing bracket")
	}
	// A number, true, false or null: up to the next delimiter.
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && skipSpace(b, j) == j {
		j++
	}
	if j == i {
		return i, syntaxError(b, i, "a value")
	}
	return j, nil
}

// skipString returns where the string that opens at b[i] ends, past its closing quote.
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; ; {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return len(b), syntaxError(b, len(b), "a closing quote")
		}
		q := j + k
		escapes := 0
		for e := q - 1; e > i && b[e] == '\\'; e-- {
			escapes++
		}
		if escapes%2 == 0 {
			return q + 1, nil
		}
		j = q + 1
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// isNull says whether b[i:] starts with null.
func isNull(b []byte, i int) bool { return bytes.HasPrefix(b[i:], []byte("null")) }

// jsonKind names the kind of the JSON value that starts with c, as fastjson's Type does.
func jsonKind(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't':
		return "true"
	case 'f':
		return "false"
	case 'n':
		return "null"
	}
	return "number"
}
