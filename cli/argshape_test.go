package cli

import (
	"encoding/json"
	"net"
	"reflect"
	"testing"
	"time"
)

type shapeBase struct {
	ID      int64 `json:"id"`
	Created time.Time
}

type shapeAddr struct {
	Street string `json:"street"`
}

type shapeTree struct {
	Name     string      `json:"name"`
	Children []shapeTree `json:"children"`
}

type shapeArgs struct {
	shapeBase
	*shapeAddr
	UserID   int64              `json:"user_id"`
	Email    string             `json:"email"`
	Nick     *string            `json:"nick,omitempty"`
	Count    int                `json:"count,string"`
	Tags     []string           `json:"tags"`
	Scores   map[string]float64 `json:"scores"`
	Extra    json.RawMessage    `json:"extra"`
	Blob     []byte             `json:"blob"`
	Any      any                `json:"any"`
	IP       net.IP             `json:"ip"`
	Skip     string             `json:"-"`
	private  string
	NoTag    bool
	When     *time.Time `json:"when,omitzero"`
	Duration time.Duration
}

func TestArgShape(t *testing.T) {
	for _, tt := range []struct {
		typ  reflect.Type
		want string
	}{
		{reflect.TypeFor[struct{}](), `{}`},
		{reflect.TypeFor[struct {
			UserID int64  `json:"user_id"`
			Email  string `json:"email"`
		}](), `{"user_id": number, "email": string}`},
		{reflect.TypeFor[shapeArgs](), `{"id": number, "Created": string, "street": string, "user_id": number, ` +
			`"email": string, "nick"?: string, "count": string, "tags": [string], "scores": {string: number}, ` +
			`"extra": any, "blob": string, "any": any, "ip": string, "NoTag": boolean, "when"?: string, "Duration": number}`},
		{reflect.TypeFor[[]int](), `[number]`},
		{reflect.TypeFor[*shapeTree](), `{"name": string, "children": [cli.shapeTree]}`},
		{nil, `any`},
	} {
		if got := argShape(tt.typ); got != tt.want {
			t.Errorf("argShape(%v) =\n%s\nwant\n%s", tt.typ, got, tt.want)
		}
	}
}
