"""French explanations of every reason code, for patients and administrators (the webmail).

Data only: each edge keeps its own table (ARCHITECTURE.md §6); this is the web's wording.
``PATIENT`` is what a patient reads; ``ADMIN`` is what an administrator or professional
reads in the web interface. Neither quotes message content.
"""

from __future__ import annotations

from types import MappingProxyType

from policy.decision import Reason

PATIENT: MappingProxyType[Reason, str] = MappingProxyType({
    Reason.OK: "Votre message a bien été envoyé.",
    Reason.TLS_REQUIRED: "La connexion n'est pas sécurisée. Veuillez réessayer.",
    Reason.AUTH_REQUIRED: "Veuillez vous connecter pour continuer.",
    Reason.AUTH_FAILED: "Identifiant ou mot de passe incorrect.",
    Reason.RATE_LIMITED: (
        "Trop de tentatives. Veuillez patienter quelques minutes avant de réessayer."
    ),
    Reason.SENDER_NOT_OWNED: (
        "Vous ne pouvez envoyer un message qu'à partir de votre propre adresse."
    ),
    Reason.SENDER_NOT_REFERENCED: (
        "Cette adresse n'appartient pas à un professionnel de santé référencé."
    ),
    Reason.DOMAIN_NOT_TRUSTED: (
        "Ce destinataire n'appartient pas à l'espace de confiance de la messagerie sécurisée "
        "de santé : le message ne peut pas lui être envoyé."
    ),
    Reason.UNKNOWN_RECIPIENT: "Cette adresse de messagerie n'existe pas.",
    Reason.RELAY_DENIED: "Ce destinataire ne peut pas être joint depuis cette messagerie.",
    Reason.PATIENT_NOT_CONTACTED: (
        "Vous ne pouvez écrire qu'à un professionnel de santé qui vous a déjà écrit et qui "
        "n'a pas clos la conversation, ou à une pharmacie auprès de laquelle vous êtes inscrit."
    ),
    Reason.ATTACHMENT_TYPE_REFUSED: (
        "Cette pièce jointe n'est pas acceptée. Formats acceptés : PDF, JPEG, PNG, TIFF et texte."
    ),
    Reason.MESSAGE_TOO_LARGE: (
        "Le message ou l'une de ses pièces jointes est trop volumineux."
    ),
    Reason.DKIM_FAILED: "L'origine de ce message n'a pas pu être vérifiée.",
    Reason.STORAGE_UNAVAILABLE: (
        "Le service est momentanément indisponible. Veuillez réessayer dans quelques instants."
    ),
})

ADMIN: MappingProxyType[Reason, str] = MappingProxyType({
    Reason.OK: "Autorisé.",
    Reason.TLS_REQUIRED: "Refusé : la connexion doit d'abord être chiffrée (STARTTLS).",
    Reason.AUTH_REQUIRED: "Refusé : authentification requise.",
    Reason.AUTH_FAILED: "Refusé : identifiants invalides.",
    Reason.RATE_LIMITED: "Refusé temporairement : trop de tentatives d'authentification.",
    Reason.SENDER_NOT_OWNED: (
        "Refusé : l'adresse d'expédition n'appartient pas au compte authentifié."
    ),
    Reason.SENDER_NOT_REFERENCED: (
        "Refusé : l'expéditeur n'est pas une boîte aux lettres active et référencée dans "
        "l'annuaire santé."
    ),
    Reason.DOMAIN_NOT_TRUSTED: (
        "Refusé : le domaine n'est pas dans la liste blanche de l'espace de confiance."
    ),
    Reason.UNKNOWN_RECIPIENT: "Refusé : boîte aux lettres inconnue.",
    Reason.RELAY_DENIED: "Refusé : relais interdit (seuls les envois authentifiés sortent).",
    Reason.PATIENT_NOT_CONTACTED: (
        "Refusé : le patient n'a pas d'autorisation de contact pour ce destinataire "
        "(aucun message reçu de lui, conversation close, autorisation expirée, ou destinataire "
        "patient)."
    ),
    Reason.ATTACHMENT_TYPE_REFUSED: (
        "Refusé : pièce jointe non acceptée (type déterminé par le contenu : exécutable, "
        "script, macro, archive chiffrée ou imbriquée, type déclaré contradictoire…)."
    ),
    Reason.MESSAGE_TOO_LARGE: "Refusé : taille maximale du message ou d'une pièce jointe dépassée.",
    Reason.DKIM_FAILED: "Refusé : aucune signature DKIM valide.",
    Reason.STORAGE_UNAVAILABLE: "Échec temporaire du stockage : réessayer plus tard.",
})


def explain(reason: Reason, *, audience: str = "patient") -> str:
    """The French sentence for ``reason`` (``audience``: ``"patient"`` or ``"admin"``)."""
    table = ADMIN if audience == "admin" else PATIENT
    return table[reason]
