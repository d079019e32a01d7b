package tasks

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"

	// Decoders for the formats Thumbnail accepts.
	_ "image/gif"
	_ "image/jpeg"

	"github.com/snappea/snappea/registry"
)

// Registry holds every task of the webapp. Both binaries use it: the web
// server hands it to queue.Open so that a bad enqueue fails there, and the
// daemon hands it to cli.Main.
var Registry = registry.New()

// WelcomeArgs are the arguments of SendWelcome.
type WelcomeArgs struct {
	UserID int64  `json:"user_id"`
	Email  string `json:"email"`
}

// SendWelcome sends a new user the welcome email.
var SendWelcome = registry.Register(Registry, "webapp.send_welcome", sendWelcome)

func sendWelcome(ctx context.Context, a WelcomeArgs) error {
	if a.Email == "" {
		return errors.New("no email address")
	}
	// A real application calls its mail provider here, with ctx, so that
	// the daemon's graceful stop can cancel a slow send.
	log := registry.Logger(ctx)
	// The address is personal data: it is logged at debug only, like the
	// daemon's own logging of task arguments.
	log.DebugContext(ctx, "sending welcome", "email", a.Email)
	log.InfoContext(ctx, "welcome sent", "user_id", a.UserID)
	return nil
}

// DefaultThumbnailSize is the longest side of a thumbnail, in pixels, when
// ThumbnailArgs.Size is zero.
const DefaultThumbnailSize = 128

// ThumbnailArgs are the arguments of Thumbnail.
type ThumbnailArgs struct {
	// Src is the image to shrink: PNG, JPEG or GIF. The daemon must be
	// able to read it, so producers pass an absolute path.
	Src string `json:"src"`
	// Dst is where the PNG thumbnail is written, replacing any file there.
	Dst string `json:"dst"`
	// Size is the longest side of the thumbnail in pixels. Default
	// DefaultThumbnailSize. Images already that small are copied unscaled.
	Size int `json:"size,omitempty"`
}

// Thumbnail writes a PNG copy of an image, scaled down to fit a square.
var Thumbnail = registry.Register(Registry, "webapp.thumbnail", thumbnail)

func thumbnail(ctx context.Context, a ThumbnailArgs) error {
	size := a.Size
	if size == 0 {
		size = DefaultThumbnailSize
	}
	if size < 0 {
		return fmt.Errorf("thumbnail size %d is negative", size)
	}
	src, err := decodeFile(a.Src)
	if err != nil {
		return err
	}
	thumb := scale(src, size)
	if err := writePNG(a.Dst, thumb); err != nil {
		return err
	}
	b := thumb.Bounds()
	registry.Logger(ctx).DebugContext(ctx, "thumbnail written", "width", b.Dx(), "height", b.Dy())
	return nil
}

func decodeFile(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("decode image %s: %w", path, err)
	}
	return img, nil
}

// writePNG writes img to path through a temporary file and a rename, so
// that a reader never sees half a thumbnail.
func writePNG(path string, img image.Image) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".thumbnail-*")
	if err != nil {
		return fmt.Errorf("write thumbnail: %w", err)
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("encode thumbnail: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write thumbnail: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write thumbnail: %w", err)
	}
	return nil
}

// scale returns img shrunk so that its longer side is size pixels, keeping
// its aspect ratio, or img itself if it already fits. It samples the
// nearest pixel: golang.org/x/image/draw has smoother filters when quality
// matters more than a dependency.
func scale(img image.Image, size int) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= size && h <= size {
		return img
	}
	tw, th := size, max(1, h*size/w)
	if h > w {
		tw, th = max(1, w*size/h), size
	}
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
	for y := range th {
		sy := b.Min.Y + (2*y+1)*h/(2*th) // the source row under the middle of this one
		for x := range tw {
			sx := b.Min.X + (2*x+1)*w/(2*tw)
			dst.Set(x, y, img.At(sx, sy))
		}
	}
	return dst
}
