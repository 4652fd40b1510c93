// /docs: Swagger UI over the document the API serves. "Authorize" takes a token (wdr_...) for "Try it out".
"use strict";
window.ui = SwaggerUIBundle({
  url: "/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  persistAuthorization: false,
  validatorUrl: null, // the default validator is a web service elsewhere: never called
});
