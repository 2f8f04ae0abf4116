package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestBlockYAMLReadsBackAsTheSameJSON: whatever JSON object goes in, a YAML reader gets the
// same values back, types included: a string that looks like a number, a boolean in YAML
// 1.1's words or a comment stays a string, and keys keep their spelling.
func TestBlockYAMLReadsBackAsTheSameJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		yaml string // when set, the exact text written
	}{
		{"nested", `{"version":1,"asset":{"coin":"bitcoin","confirmations":3},"events":[{"name":"a","http":{"url":"http://x/?a=1&b=<2>"}},{"name":"b"}]}`,
			"version: 1\nasset:\n  coin: bitcoin\n  confirmations: 3\nevents:\n  - name: a\n    http:\n      url: \"http://x/?a=1&b=<2>\"\n  - name: b\n"},
		{"strings written plain", `{"a":"/var/run/secrets/x-y.z","b":"http://127.0.0.1:18554","c":"btcwallet","d":"_u@h","e":"Yess","f":"a:b","g":":29000"}`,
			"a: /var/run/secrets/x-y.z\nb: http://127.0.0.1:18554\nc: btcwallet\nd: _u@h\ne: Yess\nf: a:b\ng: :29000\n"},
		{"empty", `{}`, "{}\n"},
		{"empty members", `{"a":{},"b":[],"c":null,"d":""}`, "a: {}\nb: []\nc: null\nd: \"\"\n"},
		{"strings YAML would read otherwise", `{"a":"yes","b":"on","c":"015","d":"1e3","e":"~","f":"null","f2":"NULL","f3":"Off","f4":"a:","f5":":","f9":"::","f6":"-x","f7":"1m0s","f8":"/a b","g":"# no","h":"x: y","i":"- z","j":" lead","k":"line\nbreak\ttab","l":"'q'\"dq\"\\","m":"@x","n":".inf","o":"2001-12-14","p":"é\u2028\u0001"}`, ""},
		{"keys YAML would read otherwise", `{"y":1,"No":2,"true":3,"1":4,"a b":5,"a:b":6,"":7,"~":8,"null":9,"<<":10,"_ok":11}`, ""},
		{"numbers", `{"i":9007199254740993,"n":-4,"f":0.5,"e":1e+21,"b":[true,false]}`, "i: 9007199254740993\n\"n\": -4\nf: 0.5\ne: 1e+21\nb:\n  - true\n  - false\n"},
		// Raw in the JSON, as json.Marshal leaves them; YAML reads some as line breaks or refuses them.
		{"characters YAML does not take raw", "{\"a\":\"x\u0085y\u007fz\u0080\ufeff\ufffe\u00a0\u2029é\U0001F600\",\"k\u0085\":1}", ""},
		{"arrays in arrays", `{"a":[[1,[2]],[],[{}],{"k":[{"m":1}]}]}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := blockYAML([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if tc.yaml != "" && string(out) != tc.yaml {
				t.Errorf("wrote:\n%s\nwant:\n%s", out, tc.yaml)
			}
			back, err := yaml.YAMLToJSON(out)
			if err != nil {
				t.Fatalf("YAML reader refused it: %v\n%s", err, out)
			}
			var got, want any
			dec := json.NewDecoder(strings.NewReader(string(back)))
			dec.UseNumber()
			if err := dec.Decode(&got); err != nil {
				t.Fatal(err)
			}
			dec = json.NewDecoder(strings.NewReader(tc.json))
			dec.UseNumber()
			if err := dec.Decode(&want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalNumbers(got), normalNumbers(want)) {
				t.Errorf("read back as %s\nwant %s\nYAML:\n%s", back, tc.json, out)
			}
		})
	}
}

// normalNumbers spells every number the way Go's float64 would, since a YAML reader gives 1e+21
// back as 1e21: the same value.
func normalNumbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = normalNumbers(x)
		}
	case []any:
		for i, x := range v {
			v[i] = normalNumbers(x)
		}
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return v.String()
		}
		f, _ := v.Float64()
		return f
	}
	return v
}

// TestBlockYAMLRefusesWhatIsNotOneObject: the writer is given json.Marshal's output, so anything
// else is a mistake it names rather than half a file.
func TestBlockYAMLRefusesWhatIsNotOneObject(t *testing.T) {
	for _, in := range []string{`[1]`, `"s"`, `{"a":1}{"b":2}`, `{"a":`, ``} {
		if out, err := blockYAML([]byte(in)); err == nil {
			t.Errorf("%q: wrote %q, want an error", in, out)
		}
	}
}

// TestBlockYAMLEveryCharacter: each character up to U+FFFF, at the start, middle or end of a
// value and of a key, reads back from YAML as itself.
func TestBlockYAMLEveryCharacter(t *testing.T) {
	for r := rune(0); r <= 0xffff; r++ {
		for _, s := range []string{string(r) + "b", "a" + string(r) + "b", "a" + string(r)} {
			j, err := json.Marshal(map[string]string{"v": s, s: "k"})
			if err != nil {
				t.Fatal(err)
			}
			out, err := blockYAML(j)
			if err != nil {
				t.Fatal(err)
			}
			var back map[string]string
			if err := yaml.Unmarshal(out, &back); err != nil {
				t.Fatalf("U+%04X: YAML reader refused it: %v\n%q", r, err, out)
			}
			if back["v"] != s || back[s] != "k" {
				t.Fatalf("%q: read back as %q", s, back)
			}
		}
	}
}
