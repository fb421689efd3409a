"""`osmon-collector run` as a whole: the CERT-FR feed followed beside ingest, and its mail."""

from __future__ import annotations

from pathlib import Path

from collector.notify import certfr_mail
from collector.store import CertfrItem, StoreError, open_store
from tests.conftest import Cluster, wait_for
from tests.test_certfr import FeedServer


def stored_items(db: Path) -> list:
    try:
        return open_store(db, readonly=True).certfr_items(limit=100)
    except StoreError:
        return []


def test_the_collector_follows_the_feed_and_keeps_the_backlog_unmailed(cluster: Cluster) -> None:
    feed = FeedServer()
    try:
        cluster.write_collector_config(
            f'[certfr]\nurl = "{feed.url}"\ninterval = "1h"\nrecipients = ["security@test"]\n'
        )
        collector = cluster.collector()
        wait_for(lambda: len(stored_items(cluster.dir / "osmon.db")) == 40, what="the 40 feed items")
        collector.terminate()
    finally:
        feed.close()
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    assert {i.mail_state for i in store.certfr_items(limit=100)} == {"backlog"}
    assert store.outbox_size() == 0
    assert feed.user_agents and feed.user_agents[0].startswith("osMonitoring/")


def test_certfr_mail_lists_each_new_alert_with_its_link() -> None:
    items = [
        CertfrItem(
            "g1",
            "Vulnérabilité dans <Produit>",
            "https://www.cert.ssi.gouv.fr/alerte/X-1/",
            1.7e9,
            "Une vulnérabilité [1] a été découverte.",
            1.7e9,
            "pending",
        ),
        CertfrItem(
            "g2", "Autre alerte", "https://www.cert.ssi.gouv.fr/alerte/X-2/", None, "Texte.", 1.7e9, "pending"
        ),
    ]
    mail = certfr_mail(items, ["security@test"])
    assert mail.subject == "[osMonitoring] CERT-FR: Vulnérabilité dans <Produit> (+1 more)"
    assert "https://www.cert.ssi.gouv.fr/alerte/X-2/" in mail.text
    assert "&lt;Produit&gt;" in mail.html and "<Produit>" not in mail.html
