"""``wsolbench data ...``: prepare, verify and synthesize datasets."""

import click


@click.group()
def data():
    """Prepare, verify and generate datasets in wsolevaluation's layout."""
