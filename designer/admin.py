from django.contrib import admin

from .models import Draft, DraftRevision


class RevisionInline(admin.TabularInline):
    model = DraftRevision
    extra = 0
    fields = ("number", "note", "author", "format", "created_at")
    readonly_fields = fields
    can_delete = False


@admin.register(Draft)
class DraftAdmin(admin.ModelAdmin):
    list_display = ("name", "revision", "updated_at")
    search_fields = ("name",)
    inlines = [RevisionInline]
