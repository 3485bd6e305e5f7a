// The API docs page (/api/docs, templates/ninja/swagger.html): django-ninja's Swagger UI set up
// from a static file, as its own swagger-ui-init.js does, and without the online validator badge,
// which would send the schema's address to validator.swagger.io (the content security policy
// allows no other origin anyway). Session requests carry the CSRF token, as the pages' do.
(function () {
  var body = document.body.dataset;
  var config = JSON.parse(document.getElementById("swagger-settings").textContent);
  config.dom_id = "#swagger-ui";
  config.validatorUrl = "none";
  config.presets = [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset];
  if (body.apiCsrf && body.csrfToken) {
    config.requestInterceptor = function (request) {
      request.headers["X-CSRFToken"] = body.csrfToken;
      return request;
    };
  }
  window.ui = SwaggerUIBundle(config);
})();
