"""The wizard's rules: which fields hold personal data, at which purpose level, which field is the
key, which are quasi-identifiers, and which small enumerations deserve a regex.

One set of rules for both places that propose a classification: the sample wizard
(``contracts.infer``, ``pstream contracts init``) and the ODCS import of a file without our
custom properties (``contracts.odcs``)::

    from contracts.classify import name_category, value_category, quasi_identifier, key_score
    name_category("phoneNumber")                 # CATEGORIES['phone']
    value_category({"email": 98}, tested=100)    # (CATEGORIES['email'], 0.98)
    quasi_identifier("zipCode")                  # True
    enumeration_regex(["S", "M", "XL"])          # '^(M|S|XL)$'

Field names are split into lower-case words (``phoneNumber``, ``phone_number`` and
``phone-number`` are ``phone number``); a marker matches when it equals a run of those words
glued together at the end of the name (``fullName`` and ``fullname`` both match ``fullname``;
``customerEmail`` is an email, ``emailOptIn`` is not). Values are tested only
on text; a category found in at least VALUE_SHARE of the tested values wins over the name.

| category | purpose group (default level) | name markers (examples) | value test |
|---|---|---|---|
| ip | identifier (1) | ip, ipAddress, clientIp | ``ipaddress.ip_address`` (stdlib) |
| device | identifier (1) | macAddress, imei, advertisingId | - |
| email | contact (2) | email, emailAddress, mail | RE2: ``x@y.z`` |
| phone | contact (2) | phone, phoneNumber, mobile, tel | ``phonenumbers`` (Google's libphonenumber) |
| iban | financial/birth (3) | iban, bankAccount | ``stdnum.iban`` (ISO 13616 format and checksum) |
| birthdate | financial/birth (3) | dob, birthDate, dateOfBirth, birthday | - (dates are everywhere) |
| person | contact (2) | fullName, firstName, lastName, surname | - |
| address | contact (2) | address, streetAddress, street | RE2: ``12 Main Street``, ``Hauptstraße 5`` |
| identifier | identifier (1) | a subject word and an id word: userId, customer_id, accountKey, username | - |

Default purpose levels (DEFAULT_LEVELS): 1 for identifiers (what analytics needs to count people
without contacting them), 2 for contact data (marketing), 3 for financial and birth data.

Why ``phonenumbers``: phone numbers have hundreds of national formats; Google's metadata says
which digit counts a region allows (``(824)862-8733x42708``, ``001-424-719-5625`` and
``+31 6 12345678`` are numbers, a nine-digit order id is not). Why ``python-stdnum`` for IBANs:
it knows each country's IBAN length and format besides the mod-97 check.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable

from contracts.regex import compile_regex

VALUE_SHARE = 0.8           # share of tested values that must look like a category
MAX_ENUM_VALUES = 10        # at most this many distinct values make an enumeration
MIN_ENUM_REPEATS = 4        # ... each seen this many times on average (and 10 values in all)
MAX_ENUM_VALUE_LENGTH = 40
DEFAULT_LEVELS = {"identifier": 1, "contact": 2, "sensitive": 3}
GROUP_LABELS = {"identifier": "identifiers", "contact": "contact data", "sensitive": "financial/birth data"}

ID_WORDS = {"id", "ids", "uuid", "guid", "identifier", "key"}
SUBJECT_WORDS = {"user", "customer", "client", "member", "account", "person", "subject", "visitor", "device",
                 "session", "profile", "patient", "employee", "citizen", "contact", "shopper", "buyer", "cookie",
                 "player", "student", "guest", "consumer", "subscriber", "owner", "driver", "passenger", "author"}
EVENT_WORDS = {"transaction", "order", "event", "message", "request", "invoice", "payment", "item", "product",
               "line", "trace", "span", "batch", "record", "row", "correlation", "idempotency", "shipment",
               "ticket", "booking", "cart", "basket"}
QUASI_MARKERS = {"age", "gender", "sex", "zip", "zipcode", "postcode", "postalcode", "birthyear", "yearofbirth",
                 "nationality", "ethnicity", "city", "maritalstatus", "occupation", "jobtitle"}

_EMAIL = compile_regex(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
_PHONE_SHAPE = compile_regex(r"\+?[0-9(][0-9 ().\-/]{5,22}[0-9]( ?(x|ext\.?|#) ?[0-9]{1,6})?")
_IBAN_SHAPE = compile_regex(r"[A-Za-z]{2}[0-9]{2}[A-Za-z0-9 ]{10,40}")
_STREET_WORDS = (r"(street|st\.?|road|rd\.?|avenue|ave\.?|lane|ln\.?|drive|dr\.?|way|boulevard|blvd\.?|straat|"
                 r"straße|strasse|gasse|weg|laan|plein|gracht|rue|via|calle|allee|platz|kade|singel)")
_ADDRESS = compile_regex(
    r"(?i)([0-9]{1,6}[a-z]?(-[0-9]+)? +\pL[\pL.'\-]*( +[\pL0-9][\pL0-9.'\-#]*)+)"        # 3435 Sandra Vista Apt. 4
    r"|(\pL[\pL.'\-]*( +\pL[\pL.'\-]*)* *" + _STREET_WORDS + r" +[0-9]{1,5}[a-z]?(-[0-9a-z]+)?)"  # Hauptstraße 5
)


_IP_SHAPE = compile_regex(r"[0-9.]{7,15}|[0-9A-Fa-f:.]{2,45}")


def _is_ip(text: str) -> bool:
    if _IP_SHAPE.fullmatch(text) is None or ("." not in text and ":" not in text):
        return False
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _is_phone(text: str, region: str = "US") -> bool:
    if _PHONE_SHAPE.fullmatch(text) is None or not any(c in text for c in "+-(). /"):
        return False          # digits only: an id or an amount more often than a phone number
    import phonenumbers
    candidates = [(text, region)]
    if text.startswith("00"):  # the ITU international prefix, as '+'
        candidates.append(("+" + text[2:], None))
    for number, default_region in candidates:
        try:
            if phonenumbers.is_possible_number(phonenumbers.parse(number, default_region)):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False


def _is_iban(text: str) -> bool:
    if _IBAN_SHAPE.fullmatch(text) is None:
        return False
    from stdnum import iban
    return iban.is_valid(text)


@dataclass(frozen=True)
class Category:
    """A kind of personal data: how names and values show it, and its purpose group."""

    name: str
    label: str
    group: str                                  # identifier | contact | sensitive (DEFAULT_LEVELS)
    markers: frozenset = frozenset()
    value_test: Callable[[str], bool] | None = None

    @property
    def level(self) -> int:
        return DEFAULT_LEVELS[self.group]


CATEGORIES = {c.name: c for c in (   # in the order names are tried: ipAddress is an ip, not an address
    Category("ip", "IP address", "identifier", frozenset({"ip", "ipaddress", "ipv4", "ipv6", "ipaddr", "remoteaddr"}),
             _is_ip),
    Category("device", "device identifier", "identifier",
             frozenset({"mac", "macaddress", "imei", "idfa", "gaid", "advertisingid", "adid", "deviceid"})),
    Category("email", "email address", "contact", frozenset({"email", "emailaddress", "mail", "mailaddress"}),
             lambda text: _EMAIL.fullmatch(text) is not None),
    Category("phone", "phone number", "contact",
             frozenset({"phone", "phonenumber", "telephone", "tel", "mobile", "mobilenumber", "cellphone", "fax",
                        "msisdn"}), _is_phone),
    Category("iban", "IBAN", "sensitive", frozenset({"iban", "bankaccount", "bankaccountnumber"}), _is_iban),
    Category("birthdate", "date of birth", "sensitive",
             frozenset({"dob", "birthdate", "dateofbirth", "birthday", "bornon"})),
    Category("person", "person name", "contact",
             frozenset({"fullname", "firstname", "lastname", "surname", "givenname", "familyname", "middlename",
                        "maidenname", "forename", "personname", "customername", "contactname"})),
    Category("address", "street address", "contact",
             frozenset({"address", "streetaddress", "street", "addressline", "homeaddress", "postaladdress"}),
             lambda text: _ADDRESS.fullmatch(text) is not None),
    Category("identifier", "a person's identifier", "identifier",
             frozenset({"username", "login", "userhandle"})),
)}
VALUE_CATEGORIES = tuple(c for c in CATEGORIES.values() if c.value_test is not None)


def name_words(name: str) -> list[str]:
    """``phoneNumber`` -> ['phone', 'number']; ``userID`` -> ['user', 'id']; ``ip_v4`` -> ['ip', 'v4']."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


GENERIC_TAILS = {"number", "nr", "no", "num", "value", "text", "string", "str"}


def _tails(words: list[str]) -> set[str]:
    """The runs of words that end the name, glued: the head of an English compound comes last
    (``customerEmail`` is an email, ``emailOptIn`` is not). Trailing digits and one generic word
    (``phoneNumber``, ``addressLine1``) may be dropped first."""
    while words and words[-1].isdigit():
        words = words[:-1]
    variants = [words] + ([words[:-1]] if len(words) > 1 and words[-1] in GENERIC_TAILS else [])
    return {"".join(v[i:]) for v in variants for i in range(max(0, len(v) - 4), len(v))}


def is_id_like(name: str) -> bool:
    """The name says it identifies something: its last word is id, uuid, key, ... (``userId``)."""
    words = name_words(name)
    return bool(words) and (words[-1] in ID_WORDS or (len(words) == 1 and words[0].endswith("id")
                                                      and words[0][:-2] in SUBJECT_WORDS | EVENT_WORDS))


def identifies_subject(name: str) -> bool:
    """An id-like name with a word for a person or their device/session (``customerId``) and none
    for an event (``transactionId``, ``orderId``)."""
    words = name_words(name)
    glued = words[0][:-2] if len(words) == 1 and words[0].endswith("id") else None
    subject = any(w in SUBJECT_WORDS for w in words) or glued in SUBJECT_WORDS
    return is_id_like(name) and subject and not any(w in EVENT_WORDS for w in words)


def name_category(name: str) -> Category | None:
    """The category a field's name points at, or None."""
    runs = _tails(name_words(name))
    for category in CATEGORIES.values():
        if runs & category.markers:
            return category
    if identifies_subject(name):
        return CATEGORIES["identifier"]
    return None


def value_category(matches: dict[str, int], tested: int) -> tuple[Category, float] | None:
    """The category most tested values look like, when at least VALUE_SHARE of them do."""
    if tested <= 0:
        return None
    best = max(VALUE_CATEGORIES, key=lambda c: matches.get(c.name, 0))
    share = matches.get(best.name, 0) / tested
    return (best, share) if share >= VALUE_SHARE else None


def value_matches(text: str, phone_region: str = "US") -> list[str]:
    """The categories a text value looks like (each test is cheap and bounded: RE2 first)."""
    found = []
    for category in VALUE_CATEGORIES:
        test = (lambda t: _is_phone(t, phone_region)) if category.name == "phone" else category.value_test
        if test(text):
            found.append(category.name)
    return found


def quasi_identifier(name: str) -> bool:
    """Fields that single a person out in combination (age, gender, zip code, city, ...)."""
    return bool(_tails(name_words(name)) & QUASI_MARKERS)


def key_score(name: str, category: Category | None, distinct: int | None, values: int | None) -> int:
    """How well a (required, non-repeated STRING) field fits as the key field; <= 0: not at all.

    A person's identifier scores highest, then an email address, then other id-like names;
    event ids (``transactionId``) score below zero. Values that repeat (several events of one
    subject) and many distinct values add a point each, when a sample shows them."""
    words = name_words(name)
    score = 0
    if identifies_subject(name) or (category is not None and category.group == "identifier"):
        score += 4
    elif category is not None and category.name == "email":
        score += 2
    elif is_id_like(name):
        score += 2
    if any(w in EVENT_WORDS for w in words):
        score -= 3
    if distinct is not None and values:
        if 1 < distinct < values:
            score += 1
        if distinct >= min(10, max(2, values // 2)):
            score += 1
    return score


def enumeration_regex(values) -> str:
    """``^(a|b|c)$`` of the given values, sorted and escaped (RE2 and ECMA-262 alike)."""
    return "^(" + "|".join(re.escape(v) for v in sorted(set(values))) + ")$"


def is_enumeration(distinct_values: set | None, values: int) -> bool:
    """Few distinct short values, each seen several times: worth a regex that refuses others."""
    if not distinct_values or len(distinct_values) > MAX_ENUM_VALUES:
        return False
    if values < max(10, MIN_ENUM_REPEATS * len(distinct_values)):
        return False
    return all(isinstance(v, str) and 0 < len(v) <= MAX_ENUM_VALUE_LENGTH and v.isprintable() for v in distinct_values)
