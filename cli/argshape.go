package cli

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"time"
)

var (
	timeType          = reflect.TypeFor[time.Time]()
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// argShape describes the JSON that decodes into t, as encoding/json reads
// it: {"user_id": number, "email": string}. A field that may be left out
// (omitempty, omitzero) is marked with a "?", a list is [elem], a map
// {string: elem}; a type that decodes itself is a string if it reads text
// (time.Time among them), else any, as is json.RawMessage.
func argShape(t reflect.Type) string {
	if t == nil {
		return "any"
	}
	var b strings.Builder
	writeShape(&b, t, map[reflect.Type]bool{})
	return b.String()
}

func writeShape(b *strings.Builder, t reflect.Type, seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		b.WriteString("string")
		return
	case t == rawMessageType:
		b.WriteString("any")
		return
	case implements(t, jsonMarshalerType):
		b.WriteString("any")
		return
	case implements(t, textMarshalerType):
		b.WriteString("string")
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		b.WriteString("boolean")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		b.WriteString("number")
	case reflect.String:
		b.WriteString("string")
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 && !implements(t.Elem(), textMarshalerType) {
			b.WriteString("string") // base64
			return
		}
		b.WriteString("[")
		writeShape(b, t.Elem(), seen)
		b.WriteString("]")
	case reflect.Map:
		b.WriteString("{string: ")
		writeShape(b, t.Elem(), seen)
		b.WriteString("}")
	case reflect.Struct:
		if seen[t] { // a recursive type: name it rather than loop
			b.WriteString(t.String())
			return
		}
		seen[t] = true
		defer delete(seen, t)
		b.WriteString("{")
		for i, f := range jsonFields(t) {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(`"` + f.name + `"`)
			if f.optional {
				b.WriteString("?")
			}
			b.WriteString(": ")
			if f.asString {
				b.WriteString("string")
			} else {
				writeShape(b, f.typ, seen)
			}
		}
		b.WriteString("}")
	default: // interfaces, and what encoding/json cannot decode
		b.WriteString("any")
	}
}

// implements reports whether t or *t implements iface, as encoding/json
// checks.
func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || reflect.PointerTo(t).Implements(iface)
}

type jsonField struct {
	name     string
	typ      reflect.Type
	optional bool // omitempty or omitzero
	asString bool // the ",string" option on a number or bool
}

// jsonFields lists a struct's fields as encoding/json sees them: exported
// ones, renamed by their tags, "-" left out, the fields of embedded
// structs without a tag promoted, and of two fields with one name the
// shallower (or the tagged one) kept.
func jsonFields(t reflect.Type) []jsonField {
	type found struct {
		jsonField
		depth  int
		tagged bool
	}
	var all []found
	var walk func(t reflect.Type, depth int, visited map[reflect.Type]bool)
	walk = func(t reflect.Type, depth int, visited map[reflect.Type]bool) {
		if visited[t] {
			return
		}
		visited[t] = true
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			ft := sf.Type
			if sf.Anonymous {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if name == "" && et.Kind() == reflect.Struct {
					walk(et, depth+1, visited)
					continue
				}
				if !sf.IsExported() && et.Kind() != reflect.Struct {
					continue
				}
			} else if !sf.IsExported() {
				continue
			}
			tagged := name != ""
			if name == "" {
				name = sf.Name
			}
			f := found{jsonField: jsonField{name: name, typ: ft}, depth: depth, tagged: tagged}
			for _, o := range strings.Split(opts, ",") {
				switch o {
				case "omitempty", "omitzero":
					f.optional = true
				case "string":
					switch ft.Kind() {
					case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
						reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
						reflect.Float32, reflect.Float64, reflect.String:
						f.asString = true
					}
				}
			}
			all = append(all, f)
		}
	}
	walk(t, 0, map[reflect.Type]bool{})
	// encoding/json's rule for one name at several depths: the shallowest
	// wins if it is alone at its depth (or the only tagged one there);
	// otherwise none is used.
	var out []jsonField
	byName := map[string][]found{}
	var order []string
	for _, f := range all {
		if _, ok := byName[f.name]; !ok {
			order = append(order, f.name)
		}
		byName[f.name] = append(byName[f.name], f)
	}
	for _, name := range order {
		fs := byName[name]
		best := fs[0]
		for _, f := range fs[1:] {
			if f.depth < best.depth {
				best = f
			}
		}
		var atDepth, taggedAtDepth []found
		for _, f := range fs {
			if f.depth == best.depth {
				atDepth = append(atDepth, f)
				if f.tagged {
					taggedAtDepth = append(taggedAtDepth, f)
				}
			}
		}
		switch {
		case len(atDepth) == 1:
			out = append(out, atDepth[0].jsonField)
		case len(taggedAtDepth) == 1:
			out = append(out, taggedAtDepth[0].jsonField)
		}
	}
	return out
}
