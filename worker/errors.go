package worker

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"net/http"

	"srp/worker/upstream"
)

// errorHandler maps every proxy failure to a status in one place and logs
// it once. Clients get the bare status text, never internals.
type errorHandler struct {
	log *slog.Logger
	std *log.Logger // for ReverseProxy's own complaints
}

func newErrorHandler(l *slog.Logger) *errorHandler {
	return &errorHandler{log: l, std: slog.NewLogLogger(l.Handler(), slog.LevelWarn)}
}

func (h *errorHandler) serve(w http.ResponseWriter, r *http.Request, err error) {
	status := statusFor(r, err)
	h.logFailure("proxy error", status, r.Host, r.Method, r.URL.Path, r.Header.Get("X-Request-Id"), err)
	if status == upstream.StatusClientClosed {
		if rec := recordOf(w); rec != nil {
			rec.Status = status
		}
		return
	}
	if status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge {
		w.Header().Set("Connection", "close") // the rest of the body is not worth reading
	}
	http.Error(w, http.StatusText(status), status)
}

// logFailure writes the one log line of a failed request, on either path.
func (h *errorHandler) logFailure(msg string, status int, host, method, path, id string, err error) {
	backend := ""
	var be *upstream.BackendError
	if errors.As(err, &be) {
		backend = be.Addr
	}
	h.log.Warn(msg, "status", status, "host", host, "method", method,
		"path", path, "backend", backend, "request_id", id, "err", err)
}

func statusFor(r *http.Request, err error) int {
	var tooBig *http.MaxBytesError
	if !errors.As(err, &tooBig) && errors.Is(r.Context().Err(), context.Canceled) {
		return upstream.StatusClientClosed
	}
	return upstream.StatusOf(err)
}
