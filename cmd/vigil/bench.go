package main

import (
	"context"
	"io"

	"github.com/vigilhq/vigil/bench"
)

// runBench runs `vigil bench produce|consume|e2e`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return bench.Run(ctx, args, stdout, stderr)
}
