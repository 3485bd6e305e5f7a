from django.urls import path

from . import views

app_name = "designer"

urlpatterns = [
    path("", views.draft_list, name="draft_list"),
    path("new/", views.new_draft, name="new_draft"),
    path("<str:name>/", views.editor, name="editor"),
    path("<str:name>/edit/", views.edit, name="edit"),
    path("<str:name>/state/", views.save_state, name="save_state"),
    path("<str:name>/settings/", views.save_workflow, name="save_workflow"),
    path("<str:name>/source/", views.save_source, name="save_source"),
    path("<str:name>/rule/", views.save_rule, name="save_rule"),
    path("<str:name>/rule/delete/", views.delete_rule, name="delete_rule"),
    path("<str:name>/undo/", views.undo, name="undo"),
    path("<str:name>/redo/", views.redo, name="redo"),
    path("<str:name>/publish/", views.publish, name="publish"),
    path("<str:name>/export.<str:fmt>", views.export, name="export"),
    path("<str:name>/dry-run/", views.dry_run, name="dry_run"),
    path("<str:name>/copy/", views.copy_state, name="copy_state"),
    path("<str:name>/stub/", views.set_stub, name="set_stub"),
    path("<str:name>/test-state/", views.test_state, name="test_state"),
    path("<str:name>/trials/<int:trial_id>/", views.trial, name="trial"),
    path("<str:name>/paste/", views.paste_state, name="paste_state"),
    path("<str:name>/versions/", views.versions, name="versions"),
    path("<str:name>/compare/", views.compare, name="compare"),
]
