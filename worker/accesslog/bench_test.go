package accesslog

import (
	"os"
	"testing"
)

// BenchmarkLine measures a line of each format: "format" alone, "write"
// to /dev/null (format, lock and the write system call), and "parallel",
// the same from every CPU at once through one Log.
func BenchmarkLine(b *testing.B) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	for _, f := range []Format{JSON, Combined} {
		r := sample()
		b.Run(f.String()+"/format", func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 1024)
			for b.Loop() {
				if f == JSON {
					buf = appendJSON(buf[:0], &r)
				} else {
					buf = appendCombined(buf[:0], &r)
				}
			}
		})
		l := New(f, null)
		b.Run(f.String()+"/write", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l.Request(&r)
			}
		})
		b.Run(f.String()+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := sample()
				for pb.Next() {
					l.Request(&r)
				}
			})
		})
	}
}
