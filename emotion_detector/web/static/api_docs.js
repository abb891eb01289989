// /api/docs: Swagger UI (served from the flask-openapi3-swagger wheel) on this server's OpenAPI description.
"use strict";

const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.specUrl,
  domNode: root,
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  validatorUrl: null, // its default sends the description to validator.swagger.io
  persistAuthorization: false,
});
