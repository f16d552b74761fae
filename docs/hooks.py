"""mkdocs hook: pages generated from the registries at build time (never edited by hand).

* ``methods/*.md`` — one page per registered method (``kdbench.methods.pages``);
* ``model-zoo.md`` — every registered model's params/FLOPs beside EMKD Table II
  (``kdbench.models.zoo``).
"""

from __future__ import annotations

from mkdocs.structure.files import File


def on_files(files, config):
    from kdbench.methods.pages import all_method_pages
    from kdbench.models.zoo import zoo_markdown

    for name, markdown in all_method_pages().items():
        files.append(File.generated(config, f"methods/{name}", content=markdown))
    files.append(File.generated(config, "model-zoo.md", content=zoo_markdown()))
    return files
