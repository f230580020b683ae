"""The words on OpenAI's and DoubleTick's dashboards that the guide tells users to find: one list.

Why a list: those dashboards are in English only, so in every locale these words stay exactly as the
screen shows them, in bold (``<b>Create secret key</b>``), with a translation beside them where it helps.
``tests/flows/test_locales.py`` checks that every locale keeps, text by text, each label the English text
shows in bold. Our own buttons ("Let's start", "Done") are not here: they are translated.
"""

from __future__ import annotations

import re

__all__ = ["DASHBOARD_LABELS", "bold_labels"]

DASHBOARD_LABELS: frozenset[str] = frozenset({
    # platform.openai.com: the API keys page and the "Create new secret key" form
    "API keys", "+ Create new secret key", "+", "Owned by", "You", "Service account", "Name",
    "DoubleTick Integration", "Project", "Default Project", "Permissions", "All", "Restricted", "Models", "Read",
    "Model capabilities", "Request", "Write", "None", "Create secret key", "Copy", "Read only", "Mixed", "Save",
    "Responses", "Assistants", "Threads", "Files", "Vector stores",
    # platform.openai.com: settings pages named in problems
    "Settings", "Organization", "Admin keys", "Limits", "Model usage", "Security", "IP allowlist",
    # web.doubletick.io
    "web.doubletick.io", "Integrations", "OpenAI", "Connect", "Forgot password",
})

_BOLD = re.compile(r"<b>(.*?)</b>", re.S)


def bold_labels(text: str) -> list[str]:
    """The dashboard labels shown in bold in ``text``, in order (repeats kept)."""
    return [inner for inner in _BOLD.findall(text) if inner in DASHBOARD_LABELS]
