"""The simulator's fake, deterministic data: accounts, listings, contacts, paging, filters."""

from __future__ import annotations

import copy
import datetime
import functools
import html
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from . import sparkql

__all__ = [
    "ACCOUNTS",
    "LISTINGS",
    "DataError",
    "account",
    "consumers",
    "filter_listings",
    "my_listings",
    "order_by",
    "page",
    "portal",
    "seed_contacts",
    "system",
]

MLS_ID = "20000426143505724628000000"
MLS_NAME = "Red River Valley MLS"
OFFICE_ID = "20030122155218391497000000"
OFFICE_NAME = "Prairie Home Realty"


def _contact_items(
    kind: str, name: str, first: str, last: str, phone: str, uri: str
) -> dict[str, Any]:
    slug = f"{first}.{last}".lower().replace(" ", "-")
    email = f"{slug}@prairie-home.example"
    return {
        "Emails": [{"Type": kind, "Name": "Work", "Address": email, "Primary": True}],
        "Phones": [
            {"Type": "Office", "Name": "Office", "Number": "701-555-0100", "Primary": False},
            {"Type": "Mobile", "Name": "Cell", "Number": phone, "Primary": True},
        ],
        "Websites": [{"Type": "Website", "Name": name, "Uri": uri, "Primary": True}],
        "Addresses": [
            {
                "Type": "Work",
                "Name": "Office",
                "Address": "300 Broadway N, Fargo, ND 58102",
                "Primary": True,
            }
        ],
        "Images": [
            {
                "Type": "Photo",
                "Name": f"{first} {last}",
                "Uri": f"https://photos.prairie-home.example/{slug}.jpg",
                "Primary": True,
            }
        ],
    }


def _account(
    account_id: str,
    user_type: str,
    first: str,
    last: str,
    phone: str,
    uri: str,
) -> dict[str, Any]:
    name = f"{first} {last}" if last else first
    return {
        "Id": account_id,
        "ResourceUri": f"/v1/accounts/{account_id}",
        "Name": name,
        "FirstName": first,
        "LastName": last,
        "UserType": user_type,
        "Office": OFFICE_NAME,
        "OfficeId": OFFICE_ID,
        "Mls": MLS_NAME,
        "MlsId": MLS_ID,
        **_contact_items("Work", name, first, last, phone, uri),
    }


#: The built-in accounts a user can sign in as; the first is the default.
ACCOUNTS: tuple[dict[str, Any], ...] = (
    _account(
        "20110208155215739016000000",
        "Member",
        "Jane",
        "Agent",
        "701-555-0142",
        "https://jane.prairie-home.example",
    ),
    _account(
        "20120719183304521078000000",
        "Member",
        "Sam",
        "Seller",
        "701-555-0177",
        "https://sam.prairie-home.example",
    ),
    _account(
        OFFICE_ID,
        "Office",
        "Prairie Home",
        "Realty",
        "701-555-0100",
        "https://www.prairie-home.example",
    ),
)

_ACCOUNTS_BY_ID = {item["Id"]: item for item in ACCOUNTS}

#: The agents a VOW portal can belong to (see :func:`portal`).
_PORTAL_OWNERS = tuple(item for item in ACCOUNTS if item["UserType"] == "Member")
#: The consumers of each portal made so far, by ``Id`` (see :func:`consumers`).
_CONSUMERS_BY_ID: dict[str, dict[str, Any]] = {}
#: The ``UserType`` of a VOW portal's consumer (the simulator's own name for it).
CONSUMER_TYPE = "VowConsumer"


def portal(name: str) -> dict[str, Any]:
    """The ``/v1/portal`` record of the VOW portal ``name`` (lowercased): which agent's it
    is. Any name is a portal; the owner is one of the two agents, chosen from the name."""
    name = name.lower()
    owner = _PORTAL_OWNERS[sum(name.encode()) % len(_PORTAL_OWNERS)]
    portal_id = f"2016{zlib.crc32(name.encode()):010d}{0:012d}"
    return {
        "Id": portal_id,
        "ResourceUri": f"/v1/portal/{portal_id}",
        "Name": name,
        "DisplayName": f"{name.title()} Home Search",
        "Enabled": True,
        "OwnerId": owner["Id"],
        "OwnerName": owner["Name"],
    }


@functools.lru_cache(maxsize=256)
def _portal_consumers(name: str) -> tuple[dict[str, Any], ...]:
    digits = f"{zlib.crc32(name.encode()):010d}"
    people = (("Chris", "Buyer", "701-555-0161"), ("Alex", "Renter", "701-555-0188"))
    made = []
    for n, (first, last, phone) in enumerate(people, start=1):
        record = _account(f"2015{digits}{n:012d}", CONSUMER_TYPE, first, last, phone, "")
        record["Emails"][0]["Address"] = f"{first}.{last}.{name}@mail.example".lower()
        record["Websites"] = []
        record["Images"] = []
        del record["Office"], record["OfficeId"]
        _CONSUMERS_BY_ID[record["Id"]] = record
        made.append(record)
    return tuple(made)


def consumers(name: str) -> tuple[dict[str, Any], ...]:
    """Copies of the consumers who can sign in to the VOW portal ``name`` (lowercased):
    two per portal, each with an account ``Id`` of its own; the first is the default."""
    return copy.deepcopy(_portal_consumers(name.lower()))


def my_contact(account_id: str, portal_name: str) -> dict[str, Any]:
    """A VOW consumer's ``/v1/my/contact``: the contact record the portal's agent has of them."""
    user = account(account_id)
    return {
        "Id": user["Id"],
        "ResourceUri": f"/v1/contacts/{user['Id']}",
        "DisplayName": user["Name"],
        "GivenName": user["FirstName"],
        "FamilyName": user["LastName"],
        "PrimaryEmail": user["Emails"][0]["Address"],
        "Tags": ["Portal", portal_name],
    }


_CITIES = (
    ("Fargo", "ND", "58102"),
    ("West Fargo", "ND", "58078"),
    ("Moorhead", "MN", "56560"),
    ("Grand Forks", "ND", "58201"),
    ("Bismarck", "ND", "58501"),
    ("Mandan", "ND", "58554"),
    ("Minot", "ND", "58701"),
    ("Dilworth", "MN", "56529"),
)
_STREETS = ("Main Ave", "Broadway N", "University Dr S", "13th Ave S", "Elm St", "Oak Ct")
_EPOCH = datetime.datetime(2024, 1, 15, 9, 0, 0)

#: How many listings the simulator has.
LISTING_COUNT = 57


def _listing(n: int) -> dict[str, Any]:
    listed = _EPOCH + datetime.timedelta(hours=7 * n, minutes=13 * n)
    modified = listed + datetime.timedelta(days=n % 9, minutes=37 * n)
    listing_id = f"{listed:%Y%m%d%H%M%S}{n:06d}000000"
    city, state, postal = _CITIES[(n * 3) % len(_CITIES)]
    agent = ACCOUNTS[n % 3]["Id"] if n % 3 < 2 else "20090615120102117243000000"
    number = 100 + (n * 37) % 900
    street = _STREETS[n % len(_STREETS)]
    return {
        "Id": listing_id,
        "ResourceUri": f"/v1/listings/{listing_id}",
        "StandardFields": {
            "ListingKey": listing_id,
            "ListingId": str(24000 + n * 7),
            "ListPrice": 125000 + ((n * 7919) % 40) * 7500,
            "StreetNumber": str(number),
            "StreetName": street,
            "UnparsedFirstLineAddress": f"{number} {street}",
            "City": city,
            "StateOrProvince": state,
            "PostalCode": postal,
            "BedsTotal": 1 + (n * 3) % 5,
            "BathsTotal": (1.0, 1.5, 2.0, 2.5, 3.0)[n % 5],
            "PropertyType": "A",
            "MlsStatus": "Active",
            "ListAgentId": agent,
            "ListOfficeId": OFFICE_ID,
            "ListOfficeName": OFFICE_NAME,
            "ModificationTimestamp": f"{modified:%Y-%m-%dT%H:%M:%S}.000-06:00",
        },
    }


#: The simulator's listings, in their default order.
LISTINGS: tuple[dict[str, Any], ...] = tuple(_listing(n) for n in range(1, LISTING_COUNT + 1))

_LISTINGS_BY_ID = {item["Id"]: item for item in LISTINGS}


class DataError(Exception):
    """A request the data API refuses: carries the Spark code, HTTP status and message."""

    def __init__(self, code: int, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def account(account_id: str) -> dict[str, Any]:
    """A copy of a built-in account or of a portal's consumer (see :func:`consumers`);
    ``KeyError`` if there is none with that ``Id``."""
    found = _ACCOUNTS_BY_ID.get(account_id) or _CONSUMERS_BY_ID[account_id]
    return copy.deepcopy(found)


def listing(listing_id: str) -> dict[str, Any] | None:
    """A copy of a listing, or ``None``."""
    found = _LISTINGS_BY_ID.get(listing_id)
    return copy.deepcopy(found) if found is not None else None


#: The sizes a listing photo comes in, as the platform names its URLs, and their widths.
PHOTO_SIZES = {
    "UriThumb": 100,
    "Uri300": 300,
    "Uri640": 640,
    "Uri800": 800,
    "Uri1024": 1024,
    "Uri1280": 1280,
    "Uri1600": 1600,
    "Uri2048": 2048,
    "UriLarge": 2048,
}


def photos(listing_id: str, base_url: str) -> list[dict[str, Any]]:
    """A listing's photos (``_expand=Photos``): three to seven, the first primary, each
    with a URL per size that the simulator serves (``/photos/<listing>/<n>/<size>``)."""
    count = 3 + int(listing_id[-8:-6] or "0") % 5
    found_listing = _LISTINGS_BY_ID.get(listing_id)
    address = (
        found_listing["StandardFields"]["UnparsedFirstLineAddress"]
        if found_listing
        else f"listing {listing_id[:14]}"
    )
    rooms = ("Front", "Kitchen", "Living room", "Bedroom", "Bath", "Yard", "Garage")
    found = []
    for n in range(1, count + 1):
        photo_id = f"{listing_id[:20]}{n:06d}"
        found.append(
            {
                "Id": photo_id,
                "ResourceUri": f"/v1/listings/{listing_id}/photos/{photo_id}",
                "Name": rooms[(n - 1) % len(rooms)],
                "Caption": f"{rooms[(n - 1) % len(rooms)]} of {address}",
                "Primary": n == 1,
                **{
                    name: f"{base_url}/photos/{listing_id}/{n}/{name.removeprefix('Uri').lower()}"
                    for name in PHOTO_SIZES
                },
            }
        )
    return found


def photo_image(listing_id: str, number: int, size: str) -> bytes | None:
    """The picture a photo URL serves (an SVG drawn from the listing and the photo number),
    or ``None`` for a photo or size there is none of."""
    width = {name.removeprefix("Uri").lower(): w for name, w in PHOTO_SIZES.items()}.get(size)
    if width is None or listing_id not in _LISTINGS_BY_ID or not 1 <= number <= 7:
        return None
    height = width * 2 // 3
    hue = (int(listing_id[-6:]) * 37 + number * 53) % 360
    label = (
        f"{_LISTINGS_BY_ID[listing_id]['StandardFields']['UnparsedFirstLineAddress']} #{number}"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" '
        f'fill="hsl({hue},45%,55%)"/><text x="50%" y="50%" text-anchor="middle" '
        f'font-family="sans-serif" font-size="{max(8, width // 20)}" fill="#fff">'
        f"{html.escape(label)}</text></svg>"
    ).encode()


def expand(items: Sequence[dict[str, Any]], expansions: str, base_url: str) -> None:
    """Add what ``_expand`` asks for to each item's ``StandardFields``, in place."""
    wanted = {part.strip() for part in expansions.split(",") if part.strip()}
    if "Photos" in wanted:
        for item in items:
            item["StandardFields"]["Photos"] = photos(str(item["Id"]), base_url)


def my_listings(account_id: str) -> list[dict[str, Any]]:
    """The listings of an agent, every listing of the office for an office account, and
    none for a VOW consumer."""
    user = _ACCOUNTS_BY_ID.get(account_id)
    if user is None:
        return []
    if user["UserType"] == "Office":
        return [item for item in LISTINGS if item["StandardFields"]["ListOfficeId"] == user["Id"]]
    return [item for item in LISTINGS if item["StandardFields"]["ListAgentId"] == user["Id"]]


def system(platform_url: str | None) -> dict[str, Any]:
    """The ``/v1/system`` record of the key's MLS and office."""
    return {
        "Id": MLS_ID,
        "ResourceUri": f"/v1/system/{MLS_ID}",
        "Name": MLS_NAME,
        "OfficeId": OFFICE_ID,
        "Office": OFFICE_NAME,
        "MlsId": MLS_ID,
        "Mls": MLS_NAME,
        "Configuration": [
            {
                "IdxDisclaimer": "Listing data is deemed reliable but not guaranteed.",
                "IdxLogo": {"Uri": "https://photos.prairie-home.example/idx.png"},
                "OAuth2ServiceEndpoint": f"{platform_url or ''}/oauth2",
            }
        ],
    }


def seed_contacts(account_id: str, first_id: int) -> list[dict[str, Any]]:
    """Two contacts every grant starts with, numbered from ``first_id``."""
    people = (("Chris", "Buyer", ["Buyer"]), ("Alex", "Renter", ["Lead", "Renter"]))
    suffix = account_id[-10:-6]
    return [
        contact_record(
            first_id + i,
            {
                "DisplayName": f"{given} {family}",
                "GivenName": given,
                "FamilyName": family,
                "PrimaryEmail": f"{given.lower()}.{family.lower()}{suffix}@mail.example",
                "Tags": tags,
            },
        )
        for i, (given, family, tags) in enumerate(people)
    ]


CONTACT_FIELDS = ("DisplayName", "GivenName", "FamilyName", "PrimaryEmail")


def contact_id(number: int) -> str:
    """The 26-digit ``Id`` of the ``number``-th contact."""
    return f"20240601000000{number:012d}"


def contact_record(number: int, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A contact from validated ``fields``."""
    cid = contact_id(number)
    record: dict[str, Any] = {"Id": cid, "ResourceUri": f"/v1/contacts/{cid}"}
    record.update(clean_contact(fields))
    return record


def clean_contact(fields: Mapping[str, Any], partial: bool = False) -> dict[str, Any]:
    """Validate the fields of a contact write (``DataError`` 1060 if wrong)."""
    record: dict[str, Any] = {}
    for name in CONTACT_FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DataError(1060, 400, f"{name} must be a string")
        record[name] = value.strip()
    tags = fields.get("Tags", [] if not partial else None)
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise DataError(1060, 400, "Tags must be a list of strings")
        record["Tags"] = list(tags)
    if not partial:
        if not any(record.get(name) for name in CONTACT_FIELDS):
            raise DataError(
                1060, 400, "One of DisplayName, GivenName, FamilyName, PrimaryEmail is required"
            )
        if not record.get("DisplayName"):
            parts = [record.get("GivenName", ""), record.get("FamilyName", "")]
            record["DisplayName"] = " ".join(p for p in parts if p) or record["PrimaryEmail"]
    return record


def _int_param(args: Mapping[str, str], name: str, default: int, high: int | None) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    valid = raw.isascii() and raw.isdigit()
    if not valid or int(raw) < 1 or (high is not None and int(raw) > high):
        limit = f" from 1 to {high}" if high is not None else " of 1 or more"
        raise DataError(1050, 400, f"Parameter {name} must be an integer{limit}")
    return int(raw)


@functools.lru_cache(maxsize=4)
def replication_listings(count: int) -> tuple[dict[str, Any], ...]:
    """What the replication host holds: the listings, then made-up ones up to ``count``,
    in ``Id`` order (the order ``_skiptoken`` pages in)."""
    made = list(LISTINGS[:count])
    for n in range(len(made), count):
        listing_id = f"{20260101000000000000000000 + n:026d}"
        record = copy.deepcopy(LISTINGS[n % len(LISTINGS)])
        record["Id"] = listing_id
        record["ResourceUri"] = f"/v1/listings/{listing_id}"
        record["StandardFields"].update(
            ListingKey=listing_id,
            ListingId=f"R{n:07d}",
            ListPrice=100000 + (n * 7919) % 400000,
        )
        made.append(record)
    return tuple(sorted(made, key=lambda item: str(item["Id"])))


def replication_page(records: Sequence[dict[str, Any]], args: Mapping[str, str]) -> dict[str, Any]:
    """One replication page: up to ``_limit`` (at most 1,000) records after ``_skiptoken``."""
    limit = _int_param(args, "_limit", 25, 1000)
    after = args.get("_skiptoken", "")
    items = [item for item in records if not after or str(item["Id"]) > after][:limit]
    return {"Success": True, "Results": [copy.deepcopy(item) for item in items]}


def page(
    items: Sequence[dict[str, Any]], args: Mapping[str, str], max_limit: int = 25
) -> dict[str, Any]:
    """The ``D`` of one page of ``items`` per ``_limit``, ``_page`` and ``_pagination``."""
    limit = _int_param(args, "_limit", 10, max_limit)
    number = _int_param(args, "_page", 1, None)
    mode = args.get("_pagination", "")
    if mode not in {"", "0", "1", "count"}:
        raise DataError(1050, 400, "Parameter _pagination must be 0, 1 or count")
    total = len(items)
    pagination = {
        "TotalRows": total,
        "PageSize": limit,
        "TotalPages": math.ceil(total / limit),
        "CurrentPage": number,
    }
    if mode == "count":
        return {"Success": True, "Results": [], "Pagination": pagination}
    start = (number - 1) * limit
    result: dict[str, Any] = {
        "Success": True,
        "Results": [copy.deepcopy(item) for item in items[start : start + limit]],
    }
    if mode == "1":
        result["Pagination"] = pagination
    return result


def filter_listings(items: Sequence[dict[str, Any]], expression: str) -> list[dict[str, Any]]:
    """The listings whose ``StandardFields`` match the SparkQL ``expression``
    (:mod:`flask_spark.testing.sparkql`): a syntax error is code 1040, an unknown field
    code 2000, a malformed ``Bt`` code 2001."""
    try:
        node = sparkql.parse(expression)
        unknown = sorted(sparkql.fields(node) - set(LISTINGS[0]["StandardFields"]))
        if unknown:
            raise sparkql.SparkQLError(2000, f"Unknown field in _filter: {unknown[0][:40]}")
        return [item for item in items if sparkql.matches(node, item["StandardFields"])]
    except sparkql.SparkQLError as exc:
        raise DataError(exc.code, 400, str(exc)) from None


def _field(name: str, item: dict[str, Any]) -> Any:
    return item["StandardFields"][name]


def order_by(items: Sequence[dict[str, Any]], expression: str) -> list[dict[str, Any]]:
    """Sort per ``_orderby``: comma-separated ``StandardFields`` names, ``-`` for descending."""
    result = list(items)
    fields = [f.strip() for f in expression.split(",") if f.strip()]
    for spec in reversed(fields):
        name = spec.lstrip("-+")
        if name not in LISTINGS[0]["StandardFields"]:
            raise DataError(1050, 400, f"Unknown field in _orderby: {name}")
        result.sort(key=functools.partial(_field, name), reverse=spec.startswith("-"))
    return result
