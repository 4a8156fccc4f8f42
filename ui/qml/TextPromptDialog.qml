// Asks for one line of text (invitees, a new room name).
import QtQuick 2.15
import QtQuick.Controls 2.15
import QtQuick.Layouts 1.15
import "."

Dialog {
    id: dialog
    property string label: ""
    property string placeholder: ""
    property string initial: ""
    signal submitted(string value)

    anchors.centerIn: Overlay.overlay
    width: 360
    modal: true
    standardButtons: Dialog.Ok | Dialog.Cancel
    onOpened: { field.text = initial; field.forceActiveFocus(); field.selectAll() }
    onAccepted: if (field.text.trim().length) submitted(field.text)

    ColumnLayout {
        anchors.fill: parent
        spacing: 8
        Label { text: dialog.label; color: Theme.subtle }
        InputField {
            id: field
            Layout.fillWidth: true
            placeholderText: dialog.placeholder
            onAccepted: dialog.accept()
        }
    }
}
