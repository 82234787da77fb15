"""Adapters to other protocols and libraries (MCP, …): each module imports its library itself; nothing here."""
