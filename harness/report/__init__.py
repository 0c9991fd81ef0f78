"""The HTML report: Jinja2 templates and inline SVG charts."""
