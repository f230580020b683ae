"""The support-agent feature: roles, handoff links, agent commands, notifications, status, HTTP API."""
