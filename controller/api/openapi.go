package api

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the API's OpenAPI 3 description, served at
// /api/v1/openapi.yaml. TestOpenAPI_MatchesRoutes keeps it and the
// registered routes in step.
//
//go:embed openapi.yaml
var OpenAPI []byte

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(OpenAPI)
}
