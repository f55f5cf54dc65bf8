"""What the customer typed, read as the events want it, and what is wrong with it in Italian."""

import re

from pydantic import ValidationError

WHOLE = re.compile(r"^[0-9]{1,9}\Z")

# The event's field → what the customer is told about the form field that fed it.
FIELD_PROBLEMS = {
    "code": "Il codice convenzione può contenere solo lettere, cifre, - e _ (al massimo 32 caratteri).",
    "quantity": "La quantità deve essere un numero intero da 1 a 100.",
    "addon": "Servizio aggiuntivo sconosciuto.",
    "payment_method": "Scegli la modalità di pagamento.",
    "years": "Scegli la durata del rinnovo.",
}


def whole(text: str) -> int | None:
    """A whole number typed in a form ('2'), or None (not '²', not '-1', not '1e9')."""
    return int(text) if WHOLE.match(text) else None


def field_error(invalid: ValidationError) -> str:
    """What is wrong with a form, in Italian (the model's own words for anything unforeseen)."""
    said = []
    for problem in invalid.errors(include_url=False, include_input=False):
        field = str(problem["loc"][0]) if problem["loc"] else ""
        said.append(FIELD_PROBLEMS.get(field) or f"{field}: {problem['msg']}")
    return " ".join(dict.fromkeys(said))
