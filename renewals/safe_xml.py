"""The XML parser for what arrives from outside (SdI's notifications, bank statements): no DTD
loaded, no entity expanded, nothing fetched, no document deeper or larger than libxml2's limits."""

from lxml import etree


def safe_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_blank_text=False,
    )
