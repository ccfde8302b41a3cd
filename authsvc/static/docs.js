// Start Swagger UI on the document the page names. A file of its own rather
// than an inline script, so the page's CSP allows scripts from 'self' only.
"use strict";

(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    // Never send the document to the online validator (swagger.io).
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
