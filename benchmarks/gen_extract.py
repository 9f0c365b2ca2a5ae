"""Synthetic Annuaire Santé extracts in the real format (DOMAIN.md §4), of any size.

    python benchmarks/gen_extract.py OUT_DIR --person-lines 2000000 --mailbox-lines 550000
    python benchmarks/gen_extract.py conf/demo --demo

Writes ``PS_LibreAcces_Personne_activite_<stamp>.txt`` (52 columns) and
``Extraction_Correspondance_MSSante_<stamp>.txt`` (31 columns): ``|``-separated, one header
line, a trailing ``|`` on every line. Identifiers are valid (RPPS/ADELI/FINESS/SIRET/SIREN
with their Luhn keys), names are French with accents, hyphens and particles, and about a
quarter of practitioners have several activities (several lines). Output is deterministic
for a given seed. ``derive_delta`` and ``derive_mailbox_delta`` write a later extract with
some practitioners (mailboxes) removed and some changed (for delta tests and benchmarks).

All names and identifiers are fictitious.
"""

from __future__ import annotations

import argparse
import random
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from directory.formats import MAILBOX_COLUMNS, PERSON_COLUMNS, M, P
from directory.professions import PROFESSIONS
from policy.identifiers import luhn_check_digit

STAMP = "202611250000"
PERSON_NAME = f"PS_LibreAcces_Personne_activite_{STAMP}.txt"
MAILBOX_NAME = f"Extraction_Correspondance_MSSante_{STAMP}.txt"

LAST_NAMES = (
    "MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS", "MOREAU",
    "LAURENT", "SIMON", "MICHEL", "LEFÈVRE", "LEROY", "ROUX", "DAVID", "BERTRAND", "MOREL",
    "FOURNIER", "GIRARD", "BONNET", "DUPONT", "LAMBERT", "FONTAINE", "ROUSSEAU", "VINCENT",
    "MULLER", "LEFEBVRE", "FAURE", "ANDRÉ", "MERCIER", "BLANC", "GUÉRIN", "BOYER", "GARNIER",
    "CHEVALIER", "FRANÇOIS", "LEGRAND", "GAUTHIER", "GARCIA", "PERRIN", "ROBIN", "CLÉMENT",
    "MORIN", "NICOLAS", "HENRY", "ROUSSEL", "MATHIEU", "GAUTIER", "MASSON", "MARCHAND", "DUVAL",
    "DENIS", "DUMONT", "MARIE", "LEMAIRE", "NOËL", "MEYER", "DUFOUR", "MEUNIER", "BRUN",
    "BLANCHARD", "GIRAUD", "JOLY", "RIVIÈRE", "LUCAS", "BRUNET", "GAILLARD", "BARBIER", "ARNAUD",
    "MARTINEZ", "GÉRARD", "ROCHE", "RENARD", "SCHMITT", "ROY", "LEROUX", "COLIN", "VIDAL", "CARON",
    "PICARD", "ROGER", "FABRE", "AUBERT", "LEMOINE", "RENAUD", "DUMAS", "LACROIX", "OLIVIER",
    "PHILIPPE", "BOURGEOIS", "PIERRE", "BENOÎT", "REY", "LECLERC", "PAYET", "ROLLAND", "LECLERCQ",
    "GUILLAUME", "LECOMTE", "LÓPEZ", "JEAN", "DUPUY", "GUILLOT", "HUBERT", "BERGER", "CARPENTIER",
    "SANCHEZ", "DUPUIS", "MOULIN", "LOUIS", "DESCHAMPS", "HUET", "VASSEUR", "PEREZ", "BOUCHER",
    "FLEURY", "ROYER", "KLEIN", "JACQUET", "ADAM", "PARIS", "POIRIER", "MARTY", "AUBRY", "GUYOT",
    "CARRÉ", "CHARLES", "RENAULT", "CHARPENTIER", "MÉNARD", "MAILLARD", "BARON", "BERTIN",
    "BAILLY", "HERVÉ", "SCHNEIDER", "FERNANDEZ", "LE-GALL", "COLLET", "LÉGER", "BOUVIER", "JULIEN",
    "PRÉVOST", "MILLET", "PERROT", "DANIEL", "LE-ROUX", "COUSIN", "GERMAIN", "BRETON", "BESSON",
    "LANGLOIS", "RÉMY", "LE-GOFF", "PELLETIER", "LÉVÊQUE", "PERRIER", "LEBLANC", "BARRÉ", "LEBRUN",
    "MARCHAL", "WEBER", "MALLET", "HAMON", "BOULANGER", "JACOB", "MONNIER", "MICHAUD", "RODRIGUEZ",
    "GUICHARD", "GILLET", "ÉTIENNE", "GRONDIN", "POULAIN", "TESSIER", "CHEVALLIER", "COLLIN",
    "CHAUVIN", "DA-SILVA", "BOUCHET", "GAY", "LEMAÎTRE", "BENARD", "MARÉCHAL", "HUMBERT",
    "REYNAUD", "ANTOINE", "HOARAU", "PERRET", "BARTHÉLEMY", "CORDIER", "PICHON", "LEJEUNE",
    "GILBERT", "LAMY", "DELAUNAY", "PASQUIER", "CARLIER", "LAPORTE", "N'DIAYE", "D'ALMEIDA",
    "DE_LA_FONTAINE", "LE_FEVRE", "LE-FÈVRE", "ŒHMICHEN"
)
LAST_NAMES = tuple(n.replace("_", " ") for n in LAST_NAMES)  # type: ignore[assignment]  # «_» stands for a space

FIRST_NAMES = (
    "Marie", "Jean", "Pierre", "Michel", "André", "Philippe", "Nathalie", "Isabelle", "Sylvie",
    "Catherine", "Françoise", "Christine", "Monique", "Valérie", "Sandrine", "Stéphanie",
    "Nicolas", "Christophe", "Frédéric", "Laurent", "Éric", "Sébastien", "Julien", "David",
    "Thomas", "Camille", "Léa", "Manon", "Chloé", "Emma", "Inès", "Zoé", "Anaïs", "Océane",
    "Mélanie", "Aurélie", "Céline", "Élodie", "Émilie", "Hélène", "Agnès", "Jérôme", "Jérémy",
    "Loïc", "Gaël", "Noël", "Joël", "Raphaël", "Mickaël", "Benoît", "François", "Grégoire",
    "Clément", "Cédric", "Hervé", "Rémi", "Jean-Pierre", "Jean-François", "Marie-Thérèse",
    "Anne-Sophie", "Marie-Claire", "Jean-Luc", "Paul", "Claire", "Sophie", "Louis", "Hugo",
    "Lucas", "Arthur", "Jules", "Adam", "Gabriel", "Léo", "Nathan", "Mathis", "Maël", "Noémie",
    "Lucie", "Juliette", "Margaux", "Pauline", "Mathilde", "Laure", "Béatrice", "Bérénice",
    "Geneviève", "Thérèse", "Josée", "Maïwenn", "Yannick", "Gwenaël", "Ségolène", "Aïcha",
    "Fatoumata", "Mohamed", "Karim", "Yasmine", "Nadia", "Rachid", "Samir", "Leïla"
)

SYLLABLES = (
    "ka", "ber", "vil", "lon", "dra", "mo", "ni", "sel", "ta", "gu", "ron", "che", "ville", "mont",
    "beau", "lac", "ri", "cor", "de", "pla", "fer", "nan", "bré", "gon", "tier", "mar", "sa",
    "lou", "vé", "dou", "ran", "sier", "zac", "quet", "nel", "mil", "rat", "bou"
)

#: (commune code, town, postcode, département code, département label)
TOWNS = (
    ("75056", "Paris", "75011", "75", "Paris"),
    ("75056", "Paris", "75015", "75", "Paris"),
    ("75056", "Paris", "75018", "75", "Paris"),
    ("69123", "Lyon", "69002", "69", "Rhône"),
    ("69123", "Lyon", "69008", "69", "Rhône"),
    ("13055", "Marseille", "13005", "13", "Bouches-du-Rhône"),
    ("33063", "Bordeaux", "33000", "33", "Gironde"),
    ("31555", "Toulouse", "31000", "31", "Haute-Garonne"),
    ("06088", "Nice", "06000", "06", "Alpes-Maritimes"),
    ("44109", "Nantes", "44000", "44", "Loire-Atlantique"),
    ("67482", "Strasbourg", "67000", "67", "Bas-Rhin"),
    ("34172", "Montpellier", "34000", "34", "Hérault"),
    ("35238", "Rennes", "35000", "35", "Ille-et-Vilaine"),
    ("59350", "Lille", "59000", "59", "Nord"),
    ("42218", "Saint-Étienne", "42000", "42", "Loire"),
    ("76351", "Le Havre", "76600", "76", "Seine-Maritime"),
    ("38185", "Grenoble", "38000", "38", "Isère"),
    ("21231", "Dijon", "21000", "21", "Côte-d'Or"),
    ("49007", "Angers", "49000", "49", "Maine-et-Loire"),
    ("30189", "Nîmes", "30000", "30", "Gard"),
    ("63113", "Clermont-Ferrand", "63000", "63", "Puy-de-Dôme"),
    ("2A004", "Ajaccio", "20000", "2A", "Corse-du-Sud"),
    ("2B033", "Bastia", "20200", "2B", "Haute-Corse"),
    ("97101", "Les Abymes", "97139", "971", "Guadeloupe"),
    ("97411", "Saint-Denis", "97400", "974", "La Réunion"),
    ("93066", "Saint-Denis", "93200", "93", "Seine-Saint-Denis"),
    ("29019", "Brest", "29200", "29", "Finistère"),
    ("64445", "Pau", "64000", "64", "Pyrénées-Atlantiques"),
    ("57463", "Metz", "57000", "57", "Moselle"),
    ("37261", "Tours", "37000", "37", "Indre-et-Loire"),
    ("80021", "Amiens", "80000", "80", "Somme"),
    ("87085", "Limoges", "87000", "87", "Haute-Vienne"),
    ("74010", "Annecy", "74000", "74", "Haute-Savoie"),
    ("56260", "Vannes", "56000", "56", "Morbihan"),
    ("01053", "Bourg-en-Bresse", "01000", "01", "Ain"),
    ("05061", "Gap", "05000", "05", "Hautes-Alpes"),
)

#: Medical specialties (code, label) — synthetic list in the published code form.
MEDICAL_SPECIALTIES = (
    ("SM54", "Médecine générale"), ("SM54", "Médecine générale"), ("SM54", "Médecine générale"),
    ("SM04", "Cardiologie et maladies vasculaires"), ("SM15", "Dermatologie et vénéréologie"),
    ("SM57", "Allergologie"), ("SM26", "Gynécologie-obstétrique"), ("SM33", "Ophtalmologie"),
    ("SM40", "Pédiatrie"), ("SM42", "Psychiatrie"), ("SM02", "Anesthésie-réanimation"),
    ("SM38", "Oto-rhino-laryngologie"), ("SM44", "Radio-diagnostic"), ("SM53", "Gériatrie"),
)
OTHER_SPECIALTIES = {
    "21": (("", ""), ("", ""), ("SM03", "Biologie médicale")),
    "40": (("", ""), ("SCD01", "Orthopédie dento-faciale")),
}

#: (profession code, weight)
PROFESSION_WEIGHTS = (
    ("10", 30), ("60", 30), ("70", 10), ("21", 7), ("40", 5), ("50", 3), ("91", 3), ("80", 2),
    ("39", 2), ("92", 1), ("95", 1), ("96", 1), ("94", 1), ("28", 1), ("26", 1), ("86", 1),
    ("98", 1),
)

CIVILITIES = (("M", "Monsieur"), ("MME", "Madame"))
DOMAINS = (
    "medecin.mssante.fr", "infirmier.mssante.fr", "pharmacien.mssante.fr",
    "kine.mssante.fr", "ch-exemple.mssante.fr", "chu-exemple.mssante.fr", "sante.mssante.fr",
)
STREET_TYPES = (("R", "Rue"), ("AV", "Avenue"), ("BD", "Boulevard"), ("PL", "Place"),
                ("CHE", "Chemin"), ("ALL", "Allée"))
STREETS = ("de la République", "Victor Hugo", "Jean Jaurès", "du Général de Gaulle", "Pasteur",
           "des Lilas", "de l'Église", "Émile Zola", "de la Gare", "du Marché", "Gambetta",
           "des Écoles", "Saint-Éloi", "de Verdun")
SERVICES = ("Secrétariat", "Cardiologie", "Urgences", "Pédiatrie", "Accueil", "Radiologie",
            "Laboratoire")
SECTORS = (("SA07", "Cabinet individuel"), ("SA08", "Cabinet de groupe"),
           ("SA01", "Etablissement public de santé"), ("SA33", "Officine de pharmacie"))


@dataclass(frozen=True)
class DemoPerson:
    """A demo professional with a mailbox on the demo domain (conf/demo/demo_accounts.toml)."""

    address: str
    kind: str  # PER / ORG
    rpps: str
    last_name: str
    first_name: str
    profession: str
    specialty: tuple[str, str]
    town_index: int
    civility: tuple[str, str] = ("DR", "Docteur")
    structure: str = ""

    @property
    def national_id(self) -> str:
        return "8" + self.rpps

    @property
    def display_name(self) -> str:
        if self.kind != "PER":
            return self.structure
        return f"{self.first_name} {self.last_name}"


def _rpps(n: int) -> str:
    base = f"{n:010d}"
    return base + luhn_check_digit(base)


DEMO_DOMAIN = "demo.mssante.fr"
DEMO_PEOPLE = (
    DemoPerson("claire.martin@demo.mssante.fr", "PER", _rpps(1999990001), "MARTIN", "Claire",
               "10", ("SM54", "Médecine générale"), 3),
    DemoPerson("paul.lefevre@demo.mssante.fr", "PER", _rpps(1999990002), "LEFÈVRE", "Paul",
               "10", ("SM04", "Cardiologie et maladies vasculaires"), 0),
    DemoPerson("sophie.bernard@demo.mssante.fr", "PER", _rpps(1999990003), "BERNARD", "Sophie",
               "60", ("", ""), 6, civility=("MME", "Madame")),
    DemoPerson("pharmacie.centrale@demo.mssante.fr", "ORG", _rpps(1999990004), "DURAND",
               "Hélène", "21", ("", ""), 3, civility=("MME", "Madame"),
               structure="PHARMACIE CENTRALE"),
)


def _luhn_number(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return body + luhn_check_digit(body)


def _finess(dept: str, rng: random.Random) -> str:
    head = dept[:2]
    luhn_head = "20" if not head.isdigit() else head
    body = "".join(rng.choice("0123456789") for _ in range(6))
    return head + body + luhn_check_digit(luhn_head + body)


@dataclass
class Site:
    part: str  # columns 19..51 joined (33 fields), without leading/trailing separator
    town: tuple[str, str, str, str, str]
    name: str
    finess: str
    siret: str


def _site(i: int, rng: random.Random, sector: tuple[str, str] | None = None) -> Site:
    town = rng.choice(TOWNS)
    commune, town_name, postcode, dept, dept_label = town
    hospital = rng.random() < 0.15
    siren = _luhn_number(str(rng.randint(1, 9)), 9, rng)
    nic_body = siren + f"{rng.randint(0, 9999):04d}"
    siret = nic_body + luhn_check_digit(nic_body)
    finess = _finess(dept, rng) if hospital else ""
    finess_ej = _finess(dept, rng) if hospital else ""
    stype = rng.choice(STREET_TYPES)
    street = rng.choice(STREETS)
    name = (f"CENTRE HOSPITALIER DE {town_name.upper()}" if hospital
            else f"CABINET {rng.choice(LAST_NAMES)}")
    sect = sector or (SECTORS[2] if hospital else rng.choice(SECTORS[:2]))
    phone = f"0{rng.randint(1, 5)}{rng.randint(10000000, 99999999)}"
    email = f"contact{i}@exemple.fr" if rng.random() < 0.2 else ""
    fields = [
        siret, siren, finess, finess_ej, f"1{siren}{i}", name, "",
        "Bâtiment B" if rng.random() < 0.1 else "", "", str(rng.randint(1, 150)),
        "bis" if rng.random() < 0.05 else "", stype[0], stype[1], street, "", "",
        postcode, commune, town_name, "99100", "France", phone, "", "", email, dept,
        dept_label, "", "ARS/ARS/ARS", sect[0], sect[1], "", "",
    ]
    assert len(fields) == 33
    return Site("|".join(fields), town, name, finess, siret)


def _syllable_name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).upper()


@dataclass
class Stats:
    practitioners: int = 0
    person_lines: int = 0
    mailbox_lines: int = 0
    national_ids: list[str] = field(default_factory=list)


def _local(text: str) -> str:
    import unicodedata

    t = unicodedata.normalize("NFKD", text.lower().replace("œ", "oe"))
    t = "".join(c for c in t if c.isascii() and (c.isalnum() or c in " -'"))
    return t.replace(" ", "-").replace("'", "")


def generate(
    out_dir: Path,
    *,
    person_lines: int,
    mailbox_lines: int,
    seed: int = 1,
    demo: bool = False,
    encoding: str = "utf-8",
    bom: bool = False,
    header_variant: bool = False,
    keep_ids: bool = False,
) -> tuple[Path, Path, Stats]:
    """Write both extracts into ``out_dir``; return their paths and a few counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    stats = Stats()
    person_path = out_dir / PERSON_NAME
    mailbox_path = out_dir / MAILBOX_NAME
    n_sites = max(40, person_lines // 15)
    sites = [_site(i, rng) for i in range(n_sites)]
    pharmacies = [_site(n_sites + i, rng, SECTORS[3]) for i in range(max(5, n_sites // 20))]
    prof_codes = [p for p, _ in PROFESSION_WEIGHTS]
    cum: list[int] = []
    total = 0
    for _, w in PROFESSION_WEIGHTS:
        total += w
        cum.append(total)
    expected_practitioners = max(1, int(person_lines / 1.33))
    per_share = 0.8 * mailbox_lines / expected_practitioners if person_lines else 0.0
    used: dict[str, int] = {}
    adeli_seq: dict[str, int] = {}
    newline = "\n"

    def header(cols: tuple[str, ...]) -> str:
        names = list(cols)
        if header_variant:
            names = [n.replace("(structure)", "(Structure)")
                     .replace("structure BAL", "Structure BAL") for n in names]
        return "|".join(names) + "|" + newline

    def address(local: str, domain: str) -> str:
        key = f"{local}@{domain}"
        n = used.get(key, 0)
        used[key] = n + 1
        return key if n == 0 else f"{local}{n + 1}@{domain}"

    with person_path.open("w", encoding=encoding, errors="replace", newline="") as pf, \
            mailbox_path.open("w", encoding=encoding, errors="replace", newline="") as mf:
        if bom:
            pf.write("\ufeff")
            mf.write("\ufeff")
        pf.write(header(PERSON_COLUMNS))
        mf.write(header(MAILBOX_COLUMNS))
        mailbox_budget = mailbox_lines
        if demo:
            for person in DEMO_PEOPLE:
                town = TOWNS[person.town_index]
                sector = SECTORS[3] if person.kind == "ORG" else None
                site = _site(0, random.Random(person.rpps), sector)
                fields = site.part.split("|")
                fields[16:21] = [town[2], town[0], town[1], "99100", "France"]
                fields[25:27] = [town[3], town[4]]
                if person.structure:
                    fields[5] = person.structure
                part = "|".join(fields)
                pline = _person_line(
                    "8", person.rpps, person.civility, person.last_name, person.first_name,
                    person.profession, person.specialty, part,
                )
                pf.write(pline + newline)
                stats.person_lines += 1
                stats.practitioners += 1
                if person.kind == "PER":
                    mf.write(_mailbox_line("PER", person.address, "8", person.rpps,
                                           person.civility[1], person.last_name,
                                           person.first_name, person.profession,
                                           person.specialty, "", "", town) + newline)
                else:
                    mf.write(_mailbox_line("ORG", person.address, "8", person.rpps,
                                           person.civility[1], "", "", person.profession,
                                           ("", ""), person.structure, "", town) + newline)
                mailbox_budget -= 1
                stats.mailbox_lines += 1
        i = 0
        while stats.person_lines < person_lines:
            i += 1
            prof = prof_codes[_bisect(cum, rng.randrange(total))]
            civ = rng.choice(CIVILITIES)
            if rng.random() < 0.3:
                last = _syllable_name(rng)
            else:
                last = rng.choice(LAST_NAMES)
                if rng.random() < 0.04:
                    last = f"{last}-{rng.choice(LAST_NAMES)}"
                if rng.random() < 0.15:
                    last = last.title()
            first = rng.choice(FIRST_NAMES)
            n_act = 1 if rng.random() < 0.75 else (2 if rng.random() < 0.7 else 3)
            n_act = min(n_act, person_lines - stats.person_lines)
            acts = [rng.choice(pharmacies if prof == "21" and rng.random() < 0.7 else sites)
                    for _ in range(n_act)]
            id_type = "8" if prof in ("10", "21", "40", "50") or rng.random() < 0.7 else "0"
            if id_type == "8":
                id_pp = _rpps(1000000000 + i)
            else:
                dept = acts[0].town[3][:2]
                dept = "20" if not dept.isdigit() else dept
                seq = adeli_seq.get(dept, 0) + 1
                adeli_seq[dept] = seq
                body = f"{dept}{seq:06d}"
                id_pp = body + luhn_check_digit(body)
            if prof == "10":
                spec = rng.choice(MEDICAL_SPECIALTIES)
            else:
                spec = rng.choice(OTHER_SPECIALTIES.get(prof, (("", ""),)))
            civ_ex = ("DR", "Docteur") if prof in ("10", "40") else ("", "")
            for site in acts:
                pf.write(_person_line(id_type, id_pp, civ_ex, last, first, prof, spec, site.part,
                                      civility=civ) + newline)
                stats.person_lines += 1
            stats.practitioners += 1
            if keep_ids:
                stats.national_ids.append(id_type + id_pp)
            if mailbox_budget > 0 and rng.random() < per_share:
                domain = rng.choice(DOMAINS)
                addr = address(f"{_local(first)}.{_local(last)}", domain)
                mf.write(_mailbox_line("PER", addr, id_type, id_pp, civ_ex[1], last, first, prof,
                                       spec, "", "", acts[0].town) + newline)
                mailbox_budget -= 1
                stats.mailbox_lines += 1
                if mailbox_budget > 0 and rng.random() < 0.25:
                    site = rng.choice(pharmacies if prof == "21" else sites)
                    kind = rng.choice(("ORG", "ORG", "ORG", "CAB", "APP"))
                    service = rng.choice(SERVICES)
                    local = {"ORG": f"{_local(service)}.{_local(site.name)[:20]}",
                             "CAB": f"cabinet.{_local(last)}",
                             "APP": f"logiciel.{_local(site.name)[:20]}"}[kind]
                    addr = address(local.strip(".-"), rng.choice(DOMAINS))
                    mf.write(_mailbox_line(kind, addr, "", "", "", "", "", prof, ("", ""),
                                           site.name, service if kind == "ORG" else "",
                                           site.town) + newline)
                    mailbox_budget -= 1
                    stats.mailbox_lines += 1
        while mailbox_budget > 0:  # top up with organisational mailboxes
            site = rng.choice(sites)
            addr = address(f"secretariat.{_local(site.name)[:24]}".strip(".-"), rng.choice(DOMAINS))
            mf.write(_mailbox_line("ORG", addr, "", "", "", "", "", "", ("", ""), site.name,
                                   "Secrétariat", site.town) + newline)
            mailbox_budget -= 1
            stats.mailbox_lines += 1
    return person_path, mailbox_path, stats


def _bisect(cum: list[int], x: int) -> int:
    lo, hi = 0, len(cum)
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _person_line(
    id_type: str, id_pp: str, civ_ex: tuple[str, str], last: str, first: str, prof: str,
    spec: tuple[str, str], site_part: str, civility: tuple[str, str] = ("", ""),
) -> str:
    mode = ("S", "Salarié") if "HOSPITALIER" in site_part else ("L", "Libéral")
    spec_type = ("S", "Spécialité ordinale") if spec[0] else ("", "")
    head = [
        id_type, id_pp, id_type + id_pp, civ_ex[0], civ_ex[1], civility[0], civility[1],
        last, first, prof, PROFESSIONS[prof], "C", "Civil", spec_type[0], spec_type[1],
        spec[0], spec[1], mode[0], mode[1],
    ]
    return "|".join(head) + "|" + site_part + "|"


def _mailbox_line(
    kind: str, addr: str, id_type: str, id_pp: str, civ: str, last: str, first: str,
    prof: str, spec: tuple[str, str], structure: str, service: str,
    town: tuple[str, str, str, str, str],
) -> str:
    national = id_type + id_pp if id_pp else ""
    fields = [
        kind, addr, id_type, id_pp, national, "1" if structure else "", "",
        service, civ, last, first, "C" if prof else "", "Civil" if prof else "", prof,
        PROFESSIONS.get(prof, ""), spec[0], spec[1], "O", structure, "", "", "",
        "12", "", "R", "de la République", "", f"{town[2]} {town[1].upper()}", town[2],
        town[3], "France",
    ]
    assert len(fields) == len(MAILBOX_COLUMNS)
    return "|".join(fields) + "|"


def person_lines_by_practitioner(
    path: Path, encoding: str = "utf-8"
) -> Iterator[tuple[str, list[str]]]:
    """(national id, its lines) for each practitioner of a person file, in file order."""
    with path.open(encoding=encoding) as f:
        next(f)
        current = ""
        lines: list[str] = []
        for line in f:
            nat = line.split("|", 3)[2]
            if nat != current and lines:
                yield current, lines
                lines = []
            current = nat
            lines.append(line)
        if lines:
            yield current, lines


@dataclass
class Delta:
    """What a derived later extract changed (national ids, or mailbox addresses)."""

    removed: set[str] = field(default_factory=set)
    #: Every changed entry (``renamed`` included).
    changed: set[str] = field(default_factory=set)
    #: The changed entries whose *identity* fields changed (a practitioner's name; a
    #: mailbox's holder name or service); the others got a new activity or address field.
    renamed: set[str] = field(default_factory=set)


def _other(current: str, rng: random.Random, choices: tuple[str, ...]) -> str:
    value = current
    while value == current:
        value = rng.choice(choices)
    return value


def derive_delta(
    src: Path, dst: Path, *, remove: float, change: float, seed: int = 2,
    skip: frozenset[str] = frozenset(),
) -> Delta:
    """Write ``dst``: the person file ``src`` with a fraction of practitioners removed and
    another changed.

    A changed practitioner either gets a new phone number on its first activity (a new
    activity replaces the old one) or, for about half of them, a new last name on all its
    lines (a person field: the practitioner's own record changes).
    """
    rng = random.Random(seed)
    delta = Delta()
    with src.open(encoding="utf-8") as f:
        header_line = f.readline()
    with dst.open("w", encoding="utf-8", newline="") as out:
        out.write(header_line)
        for nat, lines in person_lines_by_practitioner(src):
            r = rng.random()
            if nat in skip:
                out.writelines(lines)
            elif r < remove:
                delta.removed.add(nat)
            elif r < remove + change:
                delta.changed.add(nat)
                if rng.random() < 0.5:
                    delta.renamed.add(nat)
                    new_name = _other(lines[0].split("|")[P.LAST_NAME], rng, LAST_NAMES)
                    for line in lines:
                        fields = line.split("|")
                        fields[P.LAST_NAME] = new_name
                        out.write("|".join(fields))
                    continue
                fields = lines[0].split("|")
                old = fields[P.PHONE]
                while fields[P.PHONE] == old:
                    fields[P.PHONE] = f"0{rng.randint(1, 5)}{rng.randint(10000000, 99999999)}"
                out.write("|".join(fields))
                out.writelines(lines[1:])
            else:
                out.writelines(lines)
    return delta


_STREET_NUMBER = MAILBOX_COLUMNS.index("L4NUMEROVOIE structure BAL")
_NUMBERS = tuple(str(n) for n in range(1, 200))


def derive_mailbox_delta(
    src: Path, dst: Path, *, remove: float, change: float, seed: int = 3,
    skip: frozenset[str] = frozenset(),
) -> Delta:
    """Write ``dst``: the mailbox file ``src`` with a fraction of mailboxes removed and
    another changed (keyed by address).

    A changed mailbox either gets a new street number, or, for about half of them, a new
    holder name (a personal mailbox) or service (any other).
    """
    rng = random.Random(seed)
    delta = Delta()
    with src.open(encoding="utf-8") as f, dst.open("w", encoding="utf-8", newline="") as out:
        out.write(f.readline())
        for line in f:
            fields = line.split("|")
            address = fields[M.ADDRESS]
            r = rng.random()
            if address in skip:
                pass
            elif r < remove:
                delta.removed.add(address)
                continue
            elif r < remove + change:
                delta.changed.add(address)
                if rng.random() < 0.5:
                    delta.renamed.add(address)
                    if fields[M.LAST_NAME]:
                        fields[M.LAST_NAME] = _other(fields[M.LAST_NAME], rng, LAST_NAMES)
                    else:
                        fields[M.SERVICE] = _other(fields[M.SERVICE], rng, SERVICES)
                else:
                    fields[_STREET_NUMBER] = _other(fields[_STREET_NUMBER], rng, _NUMBERS)
                line = "|".join(fields)
            out.write(line)
    return delta


def zip_extracts(paths: list[Path], zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in paths:
            zf.write(p, p.name)
    return zip_path


def write_demo_accounts(path: Path) -> None:
    """``demo_accounts.toml``: the demo professionals `caducee demo` turns into accounts."""
    lines = [
        "# Demo professionals of the demo directory extract (generated by",
        "# benchmarks/gen_extract.py --demo). `caducee demo` creates one account each.",
        "",
    ]
    for p in DEMO_PEOPLE:
        kind = "professional" if p.kind == "PER" else "organisation"
        lines += [
            "[[account]]",
            f'address = "{p.address}"',
            f'display_name = "{p.display_name}"',
            f'national_id = "{p.national_id}"',
            f'rpps = "{p.rpps}"',
            f'kind = "{kind}"',
            f'mailbox_type = "{p.kind}"',
            f'profession = "{PROFESSIONS[p.profession]}"',
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--person-lines", type=int, default=2_000_000)
    parser.add_argument("--mailbox-lines", type=int, default=550_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--demo", action="store_true",
                        help="small demo extract with the demo professionals (conf/demo)")
    parser.add_argument("--latin1", action="store_true", help="write Latin-1 (old extracts)")
    parser.add_argument("--bom", action="store_true", help="start with a UTF-8 byte-order mark")
    parser.add_argument("--zip", action="store_true", help="also pack both files into a .zip")
    args = parser.parse_args(argv)
    if args.demo:
        args.person_lines, args.mailbox_lines = 400, 150
    person, mailbox, stats = generate(
        args.out_dir, person_lines=args.person_lines, mailbox_lines=args.mailbox_lines,
        seed=args.seed, demo=args.demo, encoding="latin-1" if args.latin1 else "utf-8",
        bom=args.bom,
    )
    if args.demo:
        person = person.rename(args.out_dir / "PS_LibreAcces_Personne_activite_demo.txt")
        mailbox = mailbox.rename(args.out_dir / "Extraction_Correspondance_MSSante_demo.txt")
        write_demo_accounts(args.out_dir / "demo_accounts.toml")
    if args.zip:
        zip_extracts([person, mailbox], args.out_dir / f"extraction_{STAMP}.zip")
    print(f"{person}: {stats.person_lines} lines, {stats.practitioners} practitioners")
    print(f"{mailbox}: {stats.mailbox_lines} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
