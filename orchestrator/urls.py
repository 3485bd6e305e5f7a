from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from monitoring.metrics import metrics_view
from orchestrator.accounts import ThrottledAuthenticationForm
from orchestrator.api import tokens

urlpatterns = [
    path("", include("monitoring.urls")),
    path("designer/", include("designer.urls")),
    path("api/", include(("orchestrator.api.urls", "api"), namespace="api")),
    path("account/tokens/", tokens.tokens, name="api_tokens"),
    path("account/tokens/<int:token_id>/revoke/", tokens.revoke, name="api_token_revoke"),
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm),
         name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("django-rq/", include("django_rq.urls")),
    path("metrics", metrics_view, name="metrics"),
]
