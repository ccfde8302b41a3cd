"""The `clients` CLI group: register, list and delete the services that may introspect."""

import click

from authsvc import audit, clients
from authsvc.commands import CommandGroup
from authsvc.extensions import db

clients_cli = CommandGroup("clients", help="Manage the services that may call /oauth/introspect.")


@clients_cli.command("create")
@click.argument("name")
def create_client(name):
    """Register a service; print its client id and its secret, which is shown this once."""
    try:
        client, secret = clients.create_client(name)
    except clients.ClientError as error:
        raise click.ClickException(str(error)) from None
    audit.record("client_created", client_id=client.id)
    db.session.commit()
    click.echo(f"client_id: {client.id}")
    click.echo(f"client_secret: {secret}")


@clients_cli.command("list")
def list_clients():
    """Print every registered service: id, name, creation time; never a secret."""
    registered = clients.all_clients()
    audit.record("clients_listed")
    db.session.commit()
    if not registered:
        click.echo("No registered clients: `clients create NAME` registers one.", err=True)
    for client in registered:
        click.echo(f"{client.id}\t{client.name}\t{client.created_at:%Y-%m-%dT%H:%M:%SZ}")


@clients_cli.command("delete")
@click.argument("client_id", metavar="ID")
def delete_client(client_id):
    """Delete a registered service: its credentials are refused from the next request on."""
    try:
        clients.delete_client(client_id)
    except clients.ClientError as error:
        raise click.ClickException(str(error)) from None
    audit.record("client_deleted", client_id=client_id)
    db.session.commit()
    click.echo(f"Deleted client {client_id}: its credentials are refused from now on.")
